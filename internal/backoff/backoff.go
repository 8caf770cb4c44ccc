// Package backoff is the doubling pause between the retries of something
// that keeps failing at run time (an accept, a netlink subscription, a
// raw socket): Min after the first failure, twice as long after each
// next one, at most Max, and Min again once it worked.
package backoff

import (
	"context"
	"time"
)

// Backoff is one retry loop's pause. The zero value with Min and Max set
// is ready; it is not safe for concurrent use (one loop owns it).
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next records a failure and returns the pause before the retry: Min the
// first time, then twice the previous pause, at most Max.
func (b *Backoff) Next() time.Duration {
	b.cur = min(max(2*b.cur, b.Min), b.Max)
	return b.cur
}

// Reset records a success: the next pause is Min again.
func (b *Backoff) Reset() { b.cur = 0 }

// Wait sleeps Next() or until ctx ends; false when ctx ended.
func (b *Backoff) Wait(ctx context.Context) bool { return Sleep(ctx, b.Next()) }

// Sleep sleeps d or until ctx ends; false when ctx ended.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
