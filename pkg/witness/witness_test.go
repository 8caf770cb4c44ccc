package witness

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// fakePinger answers every echo request of an address it is told to,
// after a delay; it needs no root and no socket.
type fakePinger struct {
	mu       sync.Mutex
	answers  map[netip.Addr]bool
	openErr  error
	opened   []netip.Addr
	sessions atomic.Int32 // open sessions
}

func (p *fakePinger) answer(a string, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answers[netip.MustParseAddr(a)] = on
}

func (p *fakePinger) Open(addr netip.Addr) (Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.openErr != nil {
		return nil, p.openErr
	}
	p.opened = append(p.opened, addr)
	p.sessions.Add(1)
	return &fakeConn{p: p, addr: addr, replies: make(chan int, 16), closed: make(chan struct{})}, nil
}

type fakeConn struct {
	p       *fakePinger
	addr    netip.Addr
	replies chan int
	closed  chan struct{}
	once    sync.Once
}

func (c *fakeConn) Echo(seq int) error {
	c.p.mu.Lock()
	on := c.p.answers[c.addr]
	c.p.mu.Unlock()
	if on {
		time.AfterFunc(time.Millisecond, func() {
			select {
			case c.replies <- seq:
			default:
			}
		})
	}
	return nil
}

func (c *fakeConn) Reply(deadline time.Time) (bool, error) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-c.closed:
		return false, io.EOF
	case <-c.replies:
		return true, nil
	case <-t.C:
		return false, nil
	}
}

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.closed); c.p.sessions.Add(-1) })
	return nil
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// run starts w.Run under a context the test cancels at its end, and
// reports when Run returned.
func run(t *testing.T, w *Witness, target *atomic.Pointer[string]) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- w.Run(ctx, func() string { return *target.Load() }, func() time.Duration { return 10 * time.Millisecond })
	}()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil when its context ends", err)
		}
	}
}

// TestWitnessAnswers: answers are recorded for the address pinged, for
// the way the config spells it, and not for another one; a change of
// target starts afresh; Run ends with its context and leaves no session
// open.
func TestWitnessAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &fakePinger{answers: map[netip.Addr]bool{}}
		w := New(p, quiet)
		var target atomic.Pointer[string]
		a := "2001:db8::1"
		target.Store(&a)
		p.answer(a, true)
		stop := run(t, w, &target)

		time.Sleep(100 * time.Millisecond)
		last := w.LastAnswer("2001:DB8:0::1") // as a config may spell it
		if last.IsZero() || time.Since(last) > 20*time.Millisecond {
			t.Fatalf("an answering witness: last answer %v (now %v)", last, time.Now())
		}
		if sent, answered := w.Counts(); sent < 9 || answered < 9 || answered > sent {
			t.Errorf("counts: sent %d, answered %d after 100ms at 10ms", sent, answered)
		}
		if !w.LastAnswer("198.18.0.1").IsZero() {
			t.Error("answers from another witness count for a new one")
		}

		// It stops answering: the last answer ages.
		p.answer(a, false)
		time.Sleep(100 * time.Millisecond)
		if got := time.Since(w.LastAnswer(a)); got < 90*time.Millisecond {
			t.Errorf("a silent witness answered %v ago", got)
		}

		// A reload names another witness, which does not answer yet.
		b := "198.18.0.2"
		target.Store(&b)
		time.Sleep(30 * time.Millisecond)
		if !w.LastAnswer(b).IsZero() {
			t.Error("a new witness that never answered has an answer")
		}
		p.answer(b, true)
		time.Sleep(30 * time.Millisecond)
		if w.LastAnswer(b).IsZero() {
			t.Error("the new witness's answers are not recorded")
		}
		if p.opened[len(p.opened)-1] != netip.MustParseAddr(b) {
			t.Errorf("sessions opened: %v", p.opened)
		}
		stop()
		if n := p.sessions.Load(); n != 0 {
			t.Errorf("%d sessions left open", n)
		}
	})
}

// TestWitnessRetries: a session that cannot open is retried (a second
// later), and without a witness nothing is pinged.
func TestWitnessRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &fakePinger{answers: map[netip.Addr]bool{}, openErr: errors.New("operation not permitted")}
		w := New(p, quiet)
		var target atomic.Pointer[string]
		none := ""
		target.Store(&none)
		stop := run(t, w, &target)
		time.Sleep(3 * time.Second)
		if len(p.opened) != 0 {
			t.Fatalf("pinged without a witness: %v", p.opened)
		}
		a := "198.18.0.2"
		target.Store(&a)
		p.answer(a, true)
		time.Sleep(1500 * time.Millisecond)
		if !w.LastAnswer(a).IsZero() {
			t.Fatal("answered through a session that failed to open")
		}
		p.mu.Lock()
		p.openErr = nil
		p.mu.Unlock()
		time.Sleep(1500 * time.Millisecond)
		if w.LastAnswer(a).IsZero() {
			t.Error("the session was not opened again after the error cleared")
		}
		stop()
	})
}
