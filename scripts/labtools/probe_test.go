package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestProberRunsInLaunchOrder: probes launched every 5 ms against a
// responder come back in launch order, answered by its name, and the
// tracker's events say so; after the responder goes, probes fail.
func TestProberRunsInLaunchOrder(t *testing.T) {
	ln := listen(t)
	go serveTCP(ln, []byte("be1\n"))
	p := &prober{target: ln.Addr().String(), timeout: time.Second}
	var events bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	rs := p.run(ctx, 5*time.Millisecond, newTracker(&events, &bytes.Buffer{}))
	if len(rs) < 5 {
		t.Fatalf("%d probes in 100 ms at 5 ms", len(rs))
	}
	for i, r := range rs {
		if r.Seq != i || !r.OK || r.Server != "be1" || (i > 0 && r.At.Before(rs[i-1].At)) {
			t.Fatalf("result %d: %+v, want seq %d answered by be1, in launch order", i, r, i)
		}
	}
	if got := strings.Count(events.String(), `"event":"ok"`); got != 1 {
		t.Errorf("%d ok events, want 1 (no change after the first):\n%s", got, events.String())
	}

	ln.Close()
	var mu sync.Mutex
	var started, finished []int
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	p.launch(ctx2, 5*time.Millisecond, func(seq int, _ time.Time) {
		mu.Lock()
		started = append(started, seq)
		mu.Unlock()
	}, func(r Result) {
		mu.Lock()
		defer mu.Unlock()
		if r.OK {
			t.Errorf("probe %d answered by %q after the responder closed", r.Seq, r.Server)
		}
		finished = append(finished, r.Seq)
	})
	if len(started) == 0 || len(finished) != len(started) {
		t.Errorf("started %v, finished %v: launch returned with probes in flight", started, finished)
	}
}
