package witness

import (
	"testing"

	"golang.org/x/net/icmp"
)

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
