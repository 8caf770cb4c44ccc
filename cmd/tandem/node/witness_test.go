package node

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/icmp"
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

// TestWitnessAnswersChecked: only an echo reply with our identifier, a
// sequence sent lately and the run's random payload counts; forged ones
// (guessed identifier, old or unknown sequence, other payload) do not.
func TestWitnessAnswersChecked(t *testing.T) {
	b := newEchoBook(4321)
	var sent []*icmp.Echo
	for seq := 1; seq <= 10; seq++ {
		sent = append(sent, b.request(seq))
	}
	if !b.answers(sent[9]) || !b.answers(sent[2]) {
		t.Fatal("a real answer was refused")
	}
	forged := []*icmp.Echo{
		nil,
		{ID: 4321, Seq: 10, Data: []byte("tandem witness")},      // the old fixed payload
		{ID: 4322, Seq: 10, Data: sent[9].Data},                  // another identifier
		{ID: 4321, Seq: 11, Data: b.payload(11)},                 // never sent
		{ID: 4321, Seq: 1, Data: sent[0].Data},                   // too old
		{ID: 4321, Seq: 9, Data: sent[9].Data},                   // payload of another sequence
		{ID: 4321, Seq: 10, Data: newEchoBook(4321).payload(10)}, // another run's token
	}
	for i, e := range forged {
		if b.answers(e) {
			t.Errorf("forged reply %d accepted: %+v", i, e)
		}
	}
}
