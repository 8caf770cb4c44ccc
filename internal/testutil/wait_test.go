package testutil

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// fakeTB records a failure instead of ending the test.
type fakeTB struct {
	testing.TB
	failed atomic.Bool
}

func (f *fakeTB) Helper() {}

// Fatalf ends the calling goroutine, as testing's does.
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed.Store(true)
	runtime.Goexit()
}

func TestWaitWithin(t *testing.T) {
	var n atomic.Int32
	start := time.Now()
	WaitWithin(t, time.Second, "the third call", func() bool { return n.Add(1) == 3 })
	if n.Load() != 3 {
		t.Errorf("cond called %d times, want 3 (it holds on the third)", n.Load())
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("took %v for three polls", d)
	}

	f := &fakeTB{}
	start = time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		WaitWithin(f, 30*time.Millisecond, "never", func() bool { return false })
	}()
	<-done
	if !f.failed.Load() {
		t.Error("a condition that never holds did not fail the test")
	}
	if d := time.Since(start); d < 30*time.Millisecond || d > time.Second {
		t.Errorf("gave up after %v, want about 30ms", d)
	}
}
