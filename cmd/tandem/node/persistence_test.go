package node

import (
	"testing"
	"time"
)

func TestClampExpiry(t *testing.T) {
	now := time.Unix(1767225600, 0).UnixNano()
	timeout := 10 * time.Minute
	for _, tt := range []struct {
		name          string
		expires, want int64
	}{
		{"within the timeout", now + int64(time.Minute), now + int64(time.Minute)},
		{"exactly the timeout", now + int64(timeout), now + int64(timeout)},
		{"a year ahead", now + int64(365*24*time.Hour), now + int64(timeout)},
		{"already expired", now - 1, now - 1},
	} {
		if got := clampExpiry(tt.expires, now, timeout); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
}
