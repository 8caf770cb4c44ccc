package failover

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock moves only when the test says so.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var keep []waiter
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
	c.mu.Unlock()
}

// recorder is an Effector that remembers what it was asked to do.
type recorder struct {
	mu   sync.Mutex
	acts []string
}

func (r *recorder) Perform(_ context.Context, a Action, _ Machine) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.acts = append(r.acts, kinds([]Action{a})...)
}

func (r *recorder) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.acts, s)
}

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.acts)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLoopTakesOverAndStepsDownOnStop(t *testing.T) {
	clk := &fakeClock{now: t0}
	rec := &recorder{}
	l := NewLoop(cfg("lb2", 100, true), clk, rec, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()

	waitFor(t, "backup", func() bool { return l.Snapshot().State == Backup })
	// A master's adverts hold it off however much time passes.
	for range 10 {
		l.Post(Advert{Node: "lb1", Priority: 150, State: Master})
		waitFor(t, "advert seen", func() bool { return l.Snapshot().Peer.LastMaster.Equal(clk.Now()) })
		clk.Advance(50 * time.Millisecond)
	}
	if l.Snapshot().State != Backup || rec.has("claim") {
		t.Fatalf("took over while the master advertised: %v", rec.snapshot())
	}
	// Silence: the timer fires and it claims the VIPs.
	for range 5 {
		clk.Advance(50 * time.Millisecond)
		time.Sleep(2 * time.Millisecond)
	}
	waitFor(t, "master", func() bool { return l.Snapshot().State == Master && rec.has("claim") })

	// Stop: the master keeps its VIPs, repeating priority-0 adverts, until
	// the peer takes over or the deadline passes; then Run returns.
	n := len(rec.snapshot())
	cancel()
	waitFor(t, "priority-0 advert", func() bool { return rec.has("advert0") })
	if rec.has("release") {
		t.Fatalf("released before the peer took over: %v", rec.snapshot())
	}
	l.Post(Advert{Node: "lb1", Priority: 150, State: Master})
	waitFor(t, "the hand-over to be noted", func() bool { return l.Snapshot().HandedTo == "lb1" })
	if rec.has("release") {
		t.Fatal("released at once; want one more advert interval for the peer's ARPs")
	}
	for i := 0; ; i++ {
		clk.Advance(10 * time.Millisecond)
		select {
		case <-done:
		case <-time.After(20 * time.Millisecond):
			if i < 200 {
				continue
			}
			t.Fatal("Run did not return after the peer took over")
		}
		break
	}
	got := rec.snapshot()[n:]
	if want := []string{"advert0", "MASTER>INIT", "release"}; !slices.Equal(got, want) {
		t.Errorf("stop actions = %v, want %v", got, want)
	}
}

// TestLoopSetConfig raises the priority of a backup at run time: the
// change is applied in the loop, Config shows it, and the next advert of
// the now lower-priority master is preempted.
func TestLoopSetConfig(t *testing.T) {
	clk := &fakeClock{now: t0}
	rec := &recorder{}
	l := NewLoop(cfg("lb2", 100, true), clk, rec, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = l.Run(ctx) }()

	waitFor(t, "backup", func() bool { return l.Snapshot().State == Backup })
	l.Post(Advert{Node: "lb1", Priority: 150, State: Master})
	waitFor(t, "advert seen", func() bool { return l.Snapshot().Peer.Priority == 150 })
	if rec.has("claim") {
		t.Fatal("a priority-100 backup preempted a priority-150 master")
	}
	if !l.SetConfig(cfg("lb2", 200, true)) {
		t.Fatal("SetConfig not queued")
	}
	waitFor(t, "new priority", func() bool { return l.Config().Priority == 200 })
	l.Post(Advert{Node: "lb1", Priority: 150, State: Master})
	for range 20 {
		if rec.has("claim") {
			break
		}
		clk.Advance(10 * time.Millisecond)
		time.Sleep(2 * time.Millisecond)
	}
	waitFor(t, "preempt after the priority change", func() bool { return rec.has("claim") })
}
