package healthcheck

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// Target is one server to watch.
type Target struct {
	Cluster, Server string
	Addr            netip.AddrPort
}

// Change is sent when a server's verdict changes, and once per target
// after its first check with Initial set, so the consumer learns the
// starting state.
type Change struct {
	Target  Target
	Healthy bool
	// Result is the probe that decided the change.
	Result  Result
	Initial bool
}

// Monitor runs one checker against every target, each in its own
// goroutine, every Interval. The first check of each target comes at a
// random offset in [0, Interval), so a large pool's checks spread out.
//
// Servers are presumed healthy until checked, but the first result
// decides the starting verdict without waiting for Rise or Fall: a server
// that is dead when the node starts is taken out at once rather than
// after Fall intervals of failed connections, and one that answers is in
// at once rather than after Rise. From then on RiseFall applies.
//
// Use one Monitor per cluster: Last is keyed by server name.
type Monitor struct {
	checker  Checker
	interval time.Duration
	timeout  time.Duration
	rise     int
	fall     int
	targets  []Target
	onChange func(Change)
	log      *slog.Logger

	// notifyMu serialises onChange calls and guards the verdicts
	// (targets), which the probes and the passive judge both change.
	notifyMu      sync.Mutex
	targetsByName map[string]*target

	// passive, when set, judges the servers on the clients' traffic
	// (SetPassive); its events queue on passiveCh.
	passive   *config.Passive
	passiveCh chan passiveEvent
	now       func() time.Time

	mu      sync.Mutex
	last    map[string]Result
	pending int // targets without a first result
	round   chan struct{}
}

// NewMonitor prepares a Monitor; Run starts it. Zero Interval, Timeout,
// Rise or Fall take the config defaults. onChange, which may be nil, is
// called from the target goroutines but never twice at once; it must
// return quickly, as it holds up that target's next check and any other
// change. log may be nil.
func NewMonitor(checker Checker, hc config.HealthCheck, targets []Target, onChange func(Change), log *slog.Logger) *Monitor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if onChange == nil {
		onChange = func(Change) {}
	}
	m := &Monitor{
		checker:  checker,
		interval: orDefault(hc.Interval, config.DefaultHealthInterval),
		timeout:  orDefault(hc.Timeout, config.DefaultHealthTimeout),
		rise:     orDefault(hc.Rise, config.DefaultHealthRise),
		fall:     orDefault(hc.Fall, config.DefaultHealthFall),
		targets:  append([]Target(nil), targets...),
		onChange: onChange,
		log:      log,
		last:     make(map[string]Result, len(targets)),
		pending:  len(targets),
		round:    make(chan struct{}),
		now:      time.Now,

		targetsByName: make(map[string]*target, len(targets)),
	}
	for _, t := range targets {
		m.targetsByName[t.Server] = &target{rf: RiseFall{Rise: m.rise, Fall: m.fall, Healthy: true}, first: true}
	}
	if m.pending == 0 {
		close(m.round)
	}
	return m
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Run checks the targets until ctx ends, then waits for every target
// goroutine, and the probe it may be running, to return. Call it once.
func (m *Monitor) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, t := range m.targets {
		wg.Go(func() { m.watch(ctx, t) })
	}
	if m.passiveCh != nil {
		wg.Go(func() { m.judge(ctx) })
	}
	wg.Wait()
}

// Last returns a copy of the last result of each server that has been
// checked, by server name, for status output.
func (m *Monitor) Last() map[string]Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]Result, len(m.last))
	for k, v := range m.last {
		out[k] = v
	}
	return out
}

// RoundDone is closed once every target has been checked once and its
// Initial Change delivered, so a node can wait for a warm pool before it
// becomes master.
func (m *Monitor) RoundDone() <-chan struct{} { return m.round }

// watch is one target's loop.
func (m *Monitor) watch(ctx context.Context, t Target) {
	log := m.log.With("cluster", t.Cluster, "server", t.Server)
	ts := m.targetsByName[t.Server]

	timer := time.NewTimer(rand.N(m.interval))
	defer timer.Stop()
	warning := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		begun := time.Now()
		res := m.probe(ctx, t)
		if ctx.Err() != nil {
			return // a probe cut short by shutdown says nothing of the server
		}
		m.mu.Lock()
		m.last[t.Server] = res
		m.mu.Unlock()
		if res.Warning != warning && res.Warning != "" {
			// Once per new text: "expires in 5 days" is said daily.
			log.Warn(fmt.Sprintf("server %s: %s", t.Server, res.Warning))
		}
		warning = res.Warning

		m.notifyMu.Lock()
		switch {
		case ts.first && ts.passiveDown:
			// Traffic took the server out before its first check:
			// that verdict stands until Rise passes.
			ts.first = false
			if ts.rf.Observe(res.OK) {
				m.report(log, t, ts, res, false)
			}
			m.firstDone()
		case ts.first:
			ts.first = false
			ts.rf.start(res.OK)
			m.report(log, t, ts, res, true)
			m.firstDone()
		case ts.rf.Observe(res.OK):
			m.report(log, t, ts, res, false)
		}
		m.notifyMu.Unlock()
		// Keep the period even when a probe is slow, but never run two
		// probes of one target at once.
		timer.Reset(max(m.interval-time.Since(begun), 0))
	}
}

// probe runs one check bounded by the timeout.
func (m *Monitor) probe(ctx context.Context, t Target) Result {
	pctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	return m.checker.Check(pctx, t.Addr)
}

// report logs a verdict and hands it to the consumer; notifyMu is held.
func (m *Monitor) report(log *slog.Logger, t Target, ts *target, res Result, initial bool) {
	rf := &ts.rf
	ts.reason = ""
	if !rf.Healthy {
		ts.reason = res.Detail
	} else {
		ts.passiveDown = false
	}
	switch {
	case initial && rf.Healthy:
		log.Debug(fmt.Sprintf("server %s initially up: %s", t.Server, res.Detail))
	case initial:
		log.Info(fmt.Sprintf("server %s initially down: %s", t.Server, res.Detail), "err", res.Detail)
	case rf.Healthy:
		n, of, what := rf.run()
		log.Info(fmt.Sprintf("server %s up: %s (%d of %d %s)", t.Server, res.Detail, n, of, what))
	default:
		n, of, what := rf.run()
		log.Info(fmt.Sprintf("server %s down: %s (%d of %d %s)", t.Server, res.Detail, n, of, what), "err", res.Detail)
	}
	m.onChange(Change{Target: t, Healthy: rf.Healthy, Result: res, Initial: initial})
}

// firstDone counts a target's first result and closes RoundDone after
// the last.
func (m *Monitor) firstDone() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pending--
	if m.pending == 0 {
		close(m.round)
	}
}
