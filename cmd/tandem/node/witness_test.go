package node

import (
	"net/netip"
	"testing"
	"time"
)

func TestWitnessLost(t *testing.T) {
	w := newWitness()
	now := time.Now()
	if w.lost("", now, time.Second) {
		t.Error("no witness configured must never hold")
	}
	if !w.lost("2001:db8::1", now, time.Second) {
		t.Error("a witness never pinged must hold")
	}
	a := netip.MustParseAddr("2001:db8::1")
	w.target.Store(&a)
	w.lastReply.Store(now.Add(-50 * time.Millisecond).UnixNano())
	// The config may spell the address differently from netip.
	if w.lost("2001:DB8:0::1", now, 100*time.Millisecond) {
		t.Error("an answer 50ms ago within a 100ms window counts as lost")
	}
	if !w.lost("2001:db8::1", now, 40*time.Millisecond) {
		t.Error("an answer 50ms ago within a 40ms window counts as reachable")
	}
	if !w.lost("198.18.0.1", now, time.Second) {
		t.Error("answers from another witness count for a new one")
	}
}
