package vip

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// syncBuf is a bytes.Buffer safe for a logger used from Run's goroutine.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestRivalWatchBacksOff: an ARP watch that cannot open (its interface
// does not exist) is retried after 100ms, doubling to 5s, and Run ends
// with its context. Runs on Go's clock, so no root and no waiting.
func TestRivalWatchBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs syncBuf
		w := NewRivalWatcher("tdm-missing0", nil)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		if err := w.Run(ctx, make(chan Sighting), nil, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range regexp.MustCompile(`retry_in=(\S+)`).FindAllStringSubmatch(logs.String(), -1) {
			got = append(got, m[1])
		}
		// 0.1+0.2+0.4+0.8+1.6+3.2+5+5 = 16.3s, then a 5s pause the context ends.
		want := []string{"100ms", "200ms", "400ms", "800ms", "1.6s", "3.2s", "5s", "5s", "5s"}
		if len(got) != len(want) {
			t.Fatalf("pauses %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("pauses %v, want %v", got, want)
			}
		}
	})
}
