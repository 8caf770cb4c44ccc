// Package witness pings failover.witness (such as the gateway) so that a
// box cut off from the network can tell: the node holds itself in BACKUP
// while the witness does not answer (failover's hold policy decides when
// an answer is too old; this package only records when it came).
//
// The echo requests go through a Pinger: ICMP over a raw socket (root) in
// the node, a fake in tests.
package witness

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/tandem-lb/tandem/internal/backoff"
)

// Pinger opens echo sessions with one address at a time.
type Pinger interface {
	Open(addr netip.Addr) (Conn, error)
}

// Conn is an echo session with one address.
type Conn interface {
	// Echo sends one echo request with this sequence number.
	Echo(seq int) error
	// Reply waits until deadline for one packet: true when it is an
	// answer from the address to one of this session's requests; false,
	// nil on a timeout or another packet; an error when the session is
	// closed or broken.
	Reply(deadline time.Time) (bool, error)
	Close() error
}

// retryAfter is the pause before a failed session is opened again, and
// between looks at a configuration without a witness.
const retryAfter = time.Second

// replyPoll bounds how long Reply blocks, so the reader notices its
// session ending.
const replyPoll = 250 * time.Millisecond

// Witness pings the configured witness and records its answers. Safe for
// concurrent use.
type Witness struct {
	pinger    Pinger
	log       *slog.Logger
	seq       atomic.Uint32
	lastReply atomic.Int64 // unix ns of the last answer from target
	target    atomic.Pointer[netip.Addr]
	sent      atomic.Uint64
	answered  atomic.Uint64
}

// New returns a witness that pings through p.
func New(p Pinger, log *slog.Logger) *Witness {
	return &Witness{pinger: p, log: log}
}

// LastAnswer is when target last answered; zero when it never did, or
// target is not the address being pinged (yet). target may be spelt any
// way netip reads.
func (w *Witness) LastAnswer(target string) time.Time {
	t := w.target.Load()
	if a, err := netip.ParseAddr(target); t == nil || err != nil || *t != a {
		return time.Time{}
	}
	last := w.lastReply.Load()
	if last == 0 {
		return time.Time{}
	}
	return time.Unix(0, last)
}

// Counts returns the echo requests sent and the answers received.
func (w *Witness) Counts() (sent, answered uint64) {
	return w.sent.Load(), w.answered.Load()
}

// Run pings the witness named by target() every period() until ctx ends;
// it returns nil then. Both are read on each ping, so a reload changes
// them. A session that fails is logged and opened again after a second.
func (w *Witness) Run(ctx context.Context, target func() string, period func() time.Duration) error {
	for ctx.Err() == nil {
		t := target()
		if t == "" {
			if !backoff.Sleep(ctx, retryAfter) {
				return nil
			}
			continue
		}
		err := w.session(ctx, t, target, period)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			w.log.Warn("witness: ping failed, retrying", "witness", t, "err", err)
			backoff.Sleep(ctx, retryAfter)
		}
	}
	return nil
}

// session pings addr until ctx ends or target() changes.
func (w *Witness) session(ctx context.Context, addr string, target func() string, period func() time.Duration) error {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return fmt.Errorf("witness %q: %w", addr, err)
	}
	c, err := w.pinger.Open(ip)
	if err != nil {
		return err
	}
	w.lastReply.Store(0)
	w.target.Store(&ip)

	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	defer func() {
		cancel()
		c.Close()
		<-done
	}()
	go func() {
		defer close(done)
		for rctx.Err() == nil {
			ok, err := c.Reply(time.Now().Add(replyPoll))
			if err != nil {
				return
			}
			if ok {
				w.answered.Add(1)
				w.lastReply.Store(time.Now().UnixNano())
			}
		}
	}()

	for ctx.Err() == nil && target() == addr {
		// (A reload that changes the witness ends this session; Run
		// opens another for the new address.)
		if err := c.Echo(int(w.seq.Add(1) & 0xffff)); err == nil {
			w.sent.Add(1)
		}
		// A send error (no route while the cable is out) is a miss,
		// like a lost answer.
		if !backoff.Sleep(ctx, period()) {
			return nil
		}
	}
	return nil
}
