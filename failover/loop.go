package failover

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Clock is the time source of the loop; tests inject a fake one.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// After wraps time.After.
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Effector performs the actions Step decides on: adding and removing the
// VIPs, sending adverts, running the notify hook. It is called from the
// loop's goroutine, one action at a time, in order; m is the state after
// the step.
type Effector interface {
	Perform(ctx context.Context, a Action, m Machine)
}

// Loop runs the election: it owns the Machine, feeds it events and ticks,
// and hands the resulting actions to the Effector.
type Loop struct {
	cfg    Config
	clock  Clock
	eff    Effector
	log    *slog.Logger
	events chan Event

	mu sync.Mutex
	m  Machine
}

// NewLoop builds a loop; Run starts it.
func NewLoop(cfg Config, clock Clock, eff Effector, log *slog.Logger) *Loop {
	return &Loop{cfg: cfg, clock: clock, eff: eff, log: log, events: make(chan Event, 256)}
}

// Config returns the election settings.
func (l *Loop) Config() Config {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg
}

// setConfig is the internal event SetConfig posts: the loop's goroutine
// swaps the settings between two steps, so Step stays pure.
type setConfig struct{ cfg Config }

func (setConfig) event() {}

// SetConfig replaces the election settings (a config reload). The change
// is applied in the loop's goroutine, in order with the other events; it
// reports false when the queue was full and the change was not queued.
func (l *Loop) SetConfig(cfg Config) bool { return l.Post(setConfig{cfg}) }

// Post queues an event. It never blocks the caller for long: when the
// queue is full (the loop is stuck), the event is dropped and false is
// returned, since a later advert or link event repeats the news.
func (l *Loop) Post(ev Event) bool {
	select {
	case l.events <- ev:
		return true
	default:
		l.log.Warn("election queue full, event dropped")
		return false
	}
}

// Snapshot returns the current election state.
func (l *Loop) Snapshot() Machine {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m
}

// Run starts the election and runs until ctx ends; then it steps down
// and returns once no VIP is held: a master sends priority-0 adverts and
// keeps the VIPs until the peer has taken over (or a deadline of about
// one master-down interval passes). The stop is run on a context that is
// not cancelled, so its actions complete.
func (l *Loop) Run(ctx context.Context) error {
	l.step(ctx, Start{})
	stopping := false
	done := ctx.Done()
	for {
		if stopping && l.Snapshot().State != Master {
			return nil
		}
		var timer <-chan time.Time
		if d := l.Snapshot().Deadline(); !d.IsZero() {
			timer = l.clock.After(d.Sub(l.clock.Now()))
		}
		select {
		case <-done:
			stopping, done = true, nil
			ctx = context.WithoutCancel(ctx)
			l.step(ctx, Stop{})
		case ev := <-l.events:
			l.step(ctx, ev)
		case <-timer:
			// Events that queued up while this process waited for a CPU
			// come first: an advert that arrived before the deadline must
			// not lose a coin toss against the timer.
			l.drain(ctx)
			l.step(ctx, Tick{})
		}
	}
}

// drain steps every event already queued, without waiting.
func (l *Loop) drain(ctx context.Context) {
	for {
		select {
		case ev := <-l.events:
			l.step(ctx, ev)
		default:
			return
		}
	}
}

func (l *Loop) step(ctx context.Context, ev Event) {
	if sc, ok := ev.(setConfig); ok {
		l.mu.Lock()
		l.cfg = sc.cfg
		l.mu.Unlock()
		l.log.Info("election settings changed", "priority", sc.cfg.Priority, "preempt", sc.cfg.Preempt)
		return
	}
	now := l.clock.Now()
	l.mu.Lock()
	next, acts := l.cfg.Step(l.m, ev, now)
	l.m = next
	l.mu.Unlock()
	for _, a := range acts {
		if t, ok := a.(Transition); ok {
			l.log.Info("state changed", "from", t.From.String(), "state", t.To.String(), "reason", t.Reason)
		}
		l.eff.Perform(ctx, a, next)
	}
}
