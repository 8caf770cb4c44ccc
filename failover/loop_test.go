package failover

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

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

// The loop tests run in a testing/synctest bubble on the real clock: time
// moves only when every goroutine of the bubble is blocked, so a sleep of
// the test is exactly that much of the loop's time, and synctest.Wait
// returns once the loop has handled all it was given.

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestLoopTakesOverAndStepsDownOnStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		l := NewLoop(cfg("lb2", 100, true), RealClock{}, rec, discard())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = l.Run(ctx); close(done) }()

		synctest.Wait()
		if st := l.Snapshot().State; st != Backup {
			t.Fatalf("state %v at start, want BACKUP", st)
		}
		// A master's adverts hold it off however much time passes.
		for range 10 {
			l.Post(Advert{Node: "lb1", Priority: 150, State: Master})
			synctest.Wait()
			if last := l.Snapshot().Peer.LastMaster; !last.Equal(time.Now()) {
				t.Fatalf("the advert was not seen: last master advert at %v, now %v", last, time.Now())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if l.Snapshot().State != Backup || rec.has("claim") {
			t.Fatalf("took over while the master advertised: %v", rec.snapshot())
		}
		// Silence: the timer fires and it claims the VIPs.
		time.Sleep(250 * time.Millisecond)
		synctest.Wait()
		if l.Snapshot().State != Master || !rec.has("claim") {
			t.Fatalf("state %v after 250ms of silence, actions %v; want MASTER and a claim", l.Snapshot().State, rec.snapshot())
		}

		// Stop: the master keeps its VIPs, repeating priority-0 adverts, until
		// the peer takes over or the deadline passes; then Run returns.
		n := len(rec.snapshot())
		cancel()
		synctest.Wait()
		if !rec.has("advert0") {
			t.Fatalf("no priority-0 advert on stop: %v", rec.snapshot())
		}
		if rec.has("release") {
			t.Fatalf("released before the peer took over: %v", rec.snapshot())
		}
		l.Post(Advert{Node: "lb1", Priority: 150, State: Master})
		synctest.Wait()
		if h := l.Snapshot().HandedTo; h != "lb1" {
			t.Fatalf("handed to %q, want the hand-over to lb1 noted", h)
		}
		if rec.has("release") {
			t.Fatal("released at once; want one more advert interval for the peer's ARPs")
		}
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatal("Run did not return after the peer took over")
		}
		got := rec.snapshot()[n:]
		if want := []string{"advert0", "MASTER>INIT", "release"}; !slices.Equal(got, want) {
			t.Errorf("stop actions = %v, want %v", got, want)
		}
	})
}

// TestLoopSetConfig raises the priority of a backup at run time: the
// change is applied in the loop, Config shows it, and the next advert of
// the now lower-priority master is preempted.
func TestLoopSetConfig(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		l := NewLoop(cfg("lb2", 100, true), RealClock{}, rec, discard())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = l.Run(ctx); close(done) }()
		defer func() { cancel(); <-done }() // a master steps down first

		synctest.Wait()
		if st := l.Snapshot().State; st != Backup {
			t.Fatalf("state %v at start, want BACKUP", st)
		}
		l.Post(Advert{Node: "lb1", Priority: 150, State: Master})
		synctest.Wait()
		if p := l.Snapshot().Peer.Priority; p != 150 {
			t.Fatalf("peer priority %d, want the advert's 150", p)
		}
		if rec.has("claim") {
			t.Fatal("a priority-100 backup preempted a priority-150 master")
		}
		if !l.SetConfig(cfg("lb2", 200, true)) {
			t.Fatal("SetConfig not queued")
		}
		synctest.Wait()
		if p := l.Config().Priority; p != 200 {
			t.Fatalf("priority %d after SetConfig, want 200", p)
		}
		l.Post(Advert{Node: "lb1", Priority: 150, State: Master})
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		if !rec.has("claim") {
			t.Fatalf("no preemption within 200ms of the priority change: %v", rec.snapshot())
		}
	})
}
