package ctsync

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

func ev(port uint16) Event {
	f := dnatFlow()
	f.Orig.Src = netip.AddrPortFrom(f.Orig.Src.Addr(), port)
	return Event{Type: New, Flow: f}
}

// TestDelivererPolicy: a full channel costs at most one stall, the
// events meanwhile are dropped, and the consumer gets an Overflow before
// any later event.
func TestDelivererPolicy(t *testing.T) {
	out := make(chan Event, 2)
	var st counters
	d := deliverer{out: out, stall: 20 * time.Millisecond, stats: &st, log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()

	d.send(ctx, ev(1))
	d.send(ctx, ev(2))
	start := time.Now()
	d.send(ctx, ev(3)) // full: waits one stall, then drops
	if waited := time.Since(start); waited < 20*time.Millisecond {
		t.Errorf("dropped after %v, want one stall", waited)
	}
	start = time.Now()
	d.send(ctx, ev(4)) // owed and still full: dropped at once
	if waited := time.Since(start); waited > 10*time.Millisecond {
		t.Errorf("an event while an Overflow is owed waited %v", waited)
	}
	if !d.owed || st.dropped.Load() != 2 || st.events.Load() != 2 {
		t.Fatalf("owed %v, stats %+v", d.owed, st.snapshot())
	}

	<-out
	<-out
	d.send(ctx, ev(5))
	want := []Event{{Type: Overflow}, ev(5)}
	for i, w := range want {
		got := <-out
		if got.Type != w.Type || got.Flow != w.Flow {
			t.Fatalf("event %d: %v %v, want %v %v", i, got.Type, got.Flow, w.Type, w.Flow)
		}
	}
	if d.owed || st.signals.Load() != 1 {
		t.Errorf("owed %v, signals %d", d.owed, st.signals.Load())
	}

	// An Overflow owed with no further event goes out on a retry.
	d.owe("test")
	if !d.tryMarker() || (<-out).Type != Overflow {
		t.Error("tryMarker did not deliver the owed Overflow")
	}

	// A cancelled context ends a stalled send at once.
	out <- ev(6)
	out <- ev(7)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	d.stall = time.Hour
	start = time.Now()
	d.send(cctx, ev(8))
	if time.Since(start) > time.Second {
		t.Error("send ignored a cancelled context")
	}
}
