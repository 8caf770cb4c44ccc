package metrics

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/tandem-lb/tandem/internal/testutil"
)

func TestListenAddr(t *testing.T) {
	for _, tt := range []struct {
		in, bind string
		exposed  bool
	}{
		{":9110", "127.0.0.1:9110", false},
		{"127.0.0.1:9110", "127.0.0.1:9110", false},
		{"127.0.0.53:9110", "127.0.0.53:9110", false},
		{"[::1]:9110", "[::1]:9110", false},
		{"localhost:9110", "localhost:9110", false},
		{"0.0.0.0:9110", "0.0.0.0:9110", true},
		{"[::]:9110", "[::]:9110", true},
		{"198.18.0.11:9110", "198.18.0.11:9110", true},
		{"lb1.example.org:9110", "lb1.example.org:9110", true},
	} {
		bind, exposed, err := ListenAddr(tt.in)
		if err != nil || bind != tt.bind || exposed != tt.exposed {
			t.Errorf("ListenAddr(%q) = %q, %v, %v; want %q, %v", tt.in, bind, exposed, err, tt.bind, tt.exposed)
		}
	}
}

// TestServeBindsLoopbackByDefault: ":0" listens on 127.0.0.1 only and
// says nothing alarming; an explicit wildcard logs a warning.
func TestServeBindsLoopbackByDefault(t *testing.T) {
	for _, tt := range []struct {
		addr string
		warn bool // and bound to a wildcard address, not 127.0.0.1
	}{{":0", false}, {"0.0.0.0:0", true}} {
		var logs syncBuf
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Serve(ctx, tt.addr, fixed{Node: "lb1"}, slog.New(slog.NewTextHandler(&logs, nil))) }()
		var addr string
		testutil.WaitFor(t, "the listening address in the log", func() bool {
			if m := regexp.MustCompile(`msg="metrics listening" addr=(\S+)`).FindStringSubmatch(logs.String()); m != nil {
				addr = m[1]
			}
			return addr != ""
		})
		host, _, err := net.SplitHostPort(addr)
		if err != nil || (host == "127.0.0.1") == tt.warn {
			t.Errorf("%s: bound %q", tt.addr, addr)
		}
		if warned := strings.Contains(logs.String(), "level=WARN"); warned != tt.warn {
			t.Errorf("%s: warning logged = %v, want %v: %s", tt.addr, warned, tt.warn, logs.String())
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
