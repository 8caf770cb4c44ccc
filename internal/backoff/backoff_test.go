package backoff

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestBackoffDoubles: Min, doubling to Max, and Min again after Reset.
func TestBackoffDoubles(t *testing.T) {
	b := Backoff{Min: 5 * time.Millisecond, Max: time.Second}
	var got []time.Duration
	for range 10 {
		got = append(got, b.Next())
	}
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("pauses %v, want %v ms", got, want)
		}
	}
	b.Reset()
	if d := b.Next(); d != 5*time.Millisecond {
		t.Errorf("after Reset: %v, want Min", d)
	}
}

// TestWaitEndsWithContext: Wait sleeps its pause, and returns false at
// once when the context ends.
func TestWaitEndsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := Backoff{Min: time.Second, Max: time.Minute}
		start := time.Now()
		if !b.Wait(t.Context()) || time.Since(start) != time.Second {
			t.Fatalf("first wait: %v, want 1s", time.Since(start))
		}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(500*time.Millisecond, cancel)
		start = time.Now()
		if b.Wait(ctx) || time.Since(start) != 500*time.Millisecond {
			t.Fatalf("cancelled wait: returned after %v, want false after 500ms", time.Since(start))
		}
	})
}
