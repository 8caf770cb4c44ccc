package dataplane

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestInflightWait: wait returns at once at zero, waits while something
// is open, wakes when the last one is done, ends with its context, and
// counts goroutines started with Go until they return.
func TestInflightWait(t *testing.T) {
	var f inflight
	f.wait(t.Context()) // nothing open: returns at once

	f.add()
	f.add()
	waited := make(chan struct{})
	go func() { f.wait(t.Context()); close(waited) }()
	f.done()
	select {
	case <-waited:
		t.Fatal("wait returned with one still open")
	case <-time.After(20 * time.Millisecond):
	}
	f.done()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("wait not woken by the last done")
	}

	release := make(chan struct{})
	f.Go(func() { <-release })
	if f.load() != 1 {
		t.Fatalf("count %d with one goroutine running", f.load())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	f.wait(ctx) // returns when ctx ends
	if ctx.Err() == nil {
		t.Fatal("wait returned while the goroutine runs")
	}
	close(release)
	f.wait(t.Context())
	if f.load() != 0 {
		t.Fatalf("count %d after the goroutine returned", f.load())
	}
}

// TestInflightWaitWhileCounting: unlike a sync.WaitGroup, the count may go
// up from zero while someone waits (a draining cluster still accepts, to
// refuse); every wait ends once the count is back at zero.
func TestInflightWaitWhileCounting(t *testing.T) {
	var f inflight
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 2000 {
				f.add()
				f.done()
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for range 200 {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				f.wait(ctx)
				if ctx.Err() != nil {
					t.Error("a wait missed the count reaching zero")
				}
				cancel()
			}
		})
	}
	wg.Wait()
	if f.load() != 0 {
		t.Fatalf("count %d", f.load())
	}
}
