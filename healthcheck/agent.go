package healthcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// Agent loads with a meaning of their own (the dataplane's AgentDrain).
const (
	// AgentTakeMeOut is the reply of an agent whose server must drain.
	AgentTakeMeOut = -1
	// AgentMaxLoad is the highest load an agent reports.
	AgentMaxLoad = 100
	// AgentEventStep is how far a load must move from the one last
	// reported in an event to be reported again: loads change at every
	// poll, and an event log is read by people.
	AgentEventStep = 10
	// agentMaxReply bounds what is read of a reply: "-1\r\n" and "100\n"
	// fit with room to spare.
	agentMaxReply = 16
)

// AgentReading is what one poll of a server's agent found.
type AgentReading struct {
	// Answered says the agent gave a valid reply; Load is meaningless
	// otherwise.
	Answered bool
	// Load is 0..100, or AgentTakeMeOut.
	Load int
	// Detail says what happened: "load 37", "-1: take me out",
	// "connect: connection refused", `bad reply "busy"`.
	Detail string
	// At is when the poll started.
	At time.Time
}

// same reports whether two readings tell the balancer the same thing.
func (r AgentReading) same(o AgentReading) bool {
	return r.Answered == o.Answered && (!r.Answered || r.Load == o.Load)
}

// ParseAgentReply reads an agent's reply: one ASCII integer, -1..100,
// with white space (a final newline) around it allowed.
func ParseAgentReply(b []byte) (int, error) {
	s := string(bytes.TrimSpace(b))
	n, err := strconv.Atoi(s)
	if err != nil || n < AgentTakeMeOut || n > AgentMaxLoad {
		return 0, fmt.Errorf("bad reply %q: want one integer, 0..100 or -1", s)
	}
	return n, nil
}

// QueryAgent polls the agent at addr once: connect, read its reply up to
// a newline or the close, parse it. The context bounds the whole poll.
func QueryAgent(ctx context.Context, addr netip.AddrPort) AgentReading {
	start := time.Now()
	r := AgentReading{At: start}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		r.Detail = describe(ctx, start, err)
		return r
	}
	defer conn.Close()
	stop := withDeadline(ctx, conn)
	defer stop()
	buf := make([]byte, 0, agentMaxReply)
	for len(buf) < agentMaxReply && !bytes.ContainsRune(buf, '\n') {
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			r.Detail = describe(ctx, start, err)
			return r
		}
	}
	if len(buf) == agentMaxReply && !bytes.ContainsRune(buf, '\n') {
		r.Detail = fmt.Sprintf("bad reply %q…: too long", buf)
		return r
	}
	load, err := ParseAgentReply(buf)
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	r.Answered, r.Load = true, load
	if load == AgentTakeMeOut {
		r.Detail = "-1: take me out"
	} else {
		r.Detail = "load " + strconv.Itoa(load)
	}
	return r
}

// AgentNotable decides whether a new reading is worth an event, given the
// reading last reported in one (base; had is false before any): the
// agent started or stopped answering, the server started or stopped
// asking to be taken out, or its load moved by AgentEventStep or more. A
// first reading is notable only when it is not a plain load.
func AgentNotable(base AgentReading, had bool, cur AgentReading) bool {
	switch {
	case !had:
		return !cur.Answered || cur.Load == AgentTakeMeOut
	case base.Answered != cur.Answered:
		return true
	case !cur.Answered:
		return false
	case (base.Load == AgentTakeMeOut) != (cur.Load == AgentTakeMeOut):
		return true
	}
	d := cur.Load - base.Load
	return d >= AgentEventStep || -d >= AgentEventStep
}

// AgentChange is sent when what a server's agent says changes, and once
// per target after its first poll, with Initial set.
type AgentChange struct {
	Target  Target
	Reading AgentReading
	Initial bool
	// Notable says the change is worth an event (AgentNotable).
	Notable bool
}

// AgentMonitor polls the agent of every target (its address on the
// agent's port) every interval, each in its own goroutine, the first poll
// at a random offset in [0, interval) so a large pool's polls spread out.
// Only changes reach the consumer. Use one per cluster.
type AgentMonitor struct {
	port     uint16
	interval time.Duration
	timeout  time.Duration
	targets  []Target
	onChange func(AgentChange)
	log      *slog.Logger
	// query polls one agent: QueryAgent, or a fake in tests.
	query func(ctx context.Context, addr netip.AddrPort) AgentReading

	notifyMu sync.Mutex // serialises onChange calls

	mu   sync.Mutex
	last map[string]AgentReading
}

// NewAgentMonitor prepares an AgentMonitor for the servers of targets
// (their Addr is the server's; the port is cfg's); Run starts it.
// onChange, which may be nil, is never called twice at once and must
// return quickly. log may be nil.
func NewAgentMonitor(cfg config.Agent, targets []Target, onChange func(AgentChange), log *slog.Logger) *AgentMonitor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if onChange == nil {
		onChange = func(AgentChange) {}
	}
	interval := orDefault(cfg.Interval, config.DefaultAgentInterval)
	return &AgentMonitor{
		port:     uint16(cfg.Port),
		interval: interval,
		timeout:  min(orDefault(cfg.Timeout, config.DefaultAgentTimeout), interval),
		targets:  append([]Target(nil), targets...),
		onChange: onChange,
		log:      log,
		query:    QueryAgent,
		last:     make(map[string]AgentReading, len(targets)),
	}
}

// Run polls until ctx ends, then waits for every target goroutine. Call
// it once.
func (m *AgentMonitor) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, t := range m.targets {
		wg.Go(func() { m.watch(ctx, t) })
	}
	wg.Wait()
}

// Last returns a copy of the last reading of each server polled, by
// server name, for status output.
func (m *AgentMonitor) Last() map[string]AgentReading {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]AgentReading, len(m.last))
	for k, v := range m.last {
		out[k] = v
	}
	return out
}

// watch is one target's loop.
func (m *AgentMonitor) watch(ctx context.Context, t Target) {
	log := m.log.With("cluster", t.Cluster, "server", t.Server)
	addr := netip.AddrPortFrom(t.Addr.Addr(), m.port)
	timer := time.NewTimer(rand.N(m.interval))
	defer timer.Stop()
	var prev, base AgentReading
	first := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		begun := time.Now()
		pctx, cancel := context.WithTimeout(ctx, m.timeout)
		r := m.query(pctx, addr)
		cancel()
		if ctx.Err() != nil {
			return
		}
		m.mu.Lock()
		m.last[t.Server] = r
		m.mu.Unlock()
		if first || !r.same(prev) {
			notable := AgentNotable(base, !first, r)
			if notable || first {
				base = r
			}
			if notable {
				log.Info(fmt.Sprintf("server %s agent: %s", t.Server, r.Detail))
			}
			m.notifyMu.Lock()
			m.onChange(AgentChange{Target: t, Reading: r, Initial: first, Notable: notable})
			m.notifyMu.Unlock()
			first, prev = false, r
		}
		timer.Reset(max(m.interval-time.Since(begun), 0))
	}
}
