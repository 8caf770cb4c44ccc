package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tandem-lb/tandem/pkg/api"
)

func TestPrintSplitBrain(t *testing.T) {
	var b bytes.Buffer
	printSplitBrain(&b, api.SplitBrain{})
	if b.Len() != 0 {
		t.Errorf("nothing to show, printed %q", b.String())
	}
	printSplitBrain(&b, api.SplitBrain{ARPRead: 40, Rivals: 2,
		Witness: &api.Witness{Address: "198.18.0.1", Sent: 10, Answered: 4, LastAnswerMs: 180, Reachable: false}})
	for _, want := range []string{
		"Witness  198.18.0.1 NOT ANSWERING (last answer 180ms ago; 10 pings, 4 answers)",
		"ARP      40 frames read, 0 malformed; 2 announcements of our VIPs by another box",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in:\n%s", want, b.String())
		}
	}
}
