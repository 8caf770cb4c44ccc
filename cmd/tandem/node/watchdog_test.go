package node

import (
	"testing"
	"time"
)

func TestLiveness(t *testing.T) {
	t0 := time.Unix(1767225600, 0)
	var l liveness
	w := time.Second
	steps := []struct {
		seq  uint64
		at   time.Duration
		want bool
	}{
		{0, 0, true},                      // first look
		{3, 300 * time.Millisecond, true}, // adverts going out
		{3, 1200 * time.Millisecond, true},
		{3, 1400 * time.Millisecond, false}, // stalled for more than the window
		{3, 5 * time.Second, false},
		{4, 5100 * time.Millisecond, true}, // back
	}
	for i, s := range steps {
		if got := l.alive(s.seq, t0.Add(s.at), w); got != s.want {
			t.Fatalf("step %d (seq %d at %v): alive %v, want %v", i, s.seq, s.at, got, s.want)
		}
	}
}
