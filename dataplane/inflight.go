package dataplane

import (
	"context"
	"sync"
	"sync/atomic"
)

// inflight counts what a cluster has open (connections and the goroutines
// that handle them, or UDP flows) and owns it: Go starts a goroutine it
// counts, and wait returns once the count is zero, woken when it gets
// there rather than polling. Drain waits on it.
//
// Unlike a sync.WaitGroup it may be waited on while the count goes up
// from zero again: a cluster that stopped serving still accepts, to
// refuse, while the node drains it. The count is one atomic on the hot
// path; the lock is taken only by a waiter and by the last done while one
// waits. The zero value is ready to use.
type inflight struct {
	n       atomic.Int64
	waiting atomic.Bool // a waiter holds wake
	mu      sync.Mutex
	wake    chan struct{} // closed when n reaches zero while waiting
}

// add counts one more and returns the new count.
func (f *inflight) add() int64 { return f.n.Add(1) }

// done counts one less and wakes the waiters when none is left.
func (f *inflight) done() {
	if f.n.Add(-1) != 0 || !f.waiting.Load() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.wake != nil {
		close(f.wake)
		f.wake = nil
		f.waiting.Store(false)
	}
}

// load is the count.
func (f *inflight) load() int64 { return f.n.Load() }

// Go runs fn in a goroutine counted until fn returns.
func (f *inflight) Go(fn func()) {
	f.add()
	go func() {
		defer f.done()
		fn()
	}()
}

// wait returns once the count is zero or ctx ends.
func (f *inflight) wait(ctx context.Context) {
	for {
		f.mu.Lock()
		// waiting is set before n is read, and done reads waiting after
		// it decremented n: either done sees a waiter, or the waiter
		// sees zero.
		if f.wake == nil {
			f.wake = make(chan struct{})
		}
		wake := f.wake
		f.waiting.Store(true)
		if f.n.Load() == 0 {
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-wake:
		}
	}
}
