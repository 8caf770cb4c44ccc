package ctsync

import (
	"context"
	"log/slog"
	"time"
)

// deliverer hands events to the consumer's channel for the event reader,
// which must never block for long: see Events for the policy. It is owned
// by one reader goroutine.
type deliverer struct {
	out   chan<- Event
	stall time.Duration
	stats *counters
	log   *slog.Logger

	owed  bool // an Overflow must reach the consumer before any event
	timer *time.Timer
}

// owe records that events were lost: the consumer gets an Overflow
// before the next event. Logged once per episode.
func (d *deliverer) owe(why string) {
	if !d.owed {
		d.log.Warn("conntrack events lost, consumer must resync", "reason", why)
	}
	d.owed = true
}

// tryMarker delivers the owed Overflow if out has room now.
func (d *deliverer) tryMarker() bool {
	if !d.owed {
		return true
	}
	select {
	case d.out <- Event{Type: Overflow}:
		d.owed = false
		d.stats.signals.Add(1)
		return true
	default:
		return false
	}
}

// send delivers ev, waiting at most stall for room. While an Overflow is
// owed and cannot be delivered, events are dropped without waiting: the
// resync the Overflow asks for covers them.
func (d *deliverer) send(ctx context.Context, ev Event) {
	if !d.tryMarker() {
		d.stats.dropped.Add(1)
		return
	}
	select {
	case d.out <- ev:
		d.stats.events.Add(1)
		return
	default:
	}
	if d.timer == nil {
		d.timer = time.NewTimer(d.stall)
	} else {
		d.timer.Reset(d.stall)
	}
	select {
	case d.out <- ev:
		d.timer.Stop()
		d.stats.events.Add(1)
	case <-d.timer.C:
		d.stats.dropped.Add(1)
		d.owe("consumer did not keep up")
	case <-ctx.Done():
		d.timer.Stop()
	}
}
