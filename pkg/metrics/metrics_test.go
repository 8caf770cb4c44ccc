package metrics

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

type fixed api.Status

func (f fixed) Status() api.Status { return api.Status(f) }

func TestMetricsExposeTheStatus(t *testing.T) {
	st := fixed{
		Node: "lb1", State: "MASTER", Priority: 150, TransitionsTotal: 3,
		Persistence: api.Persistence{Enabled: true, Entries: 500, State: "IN SYNC", LagMs: 12},
		VIPs:        []api.VIP{{Address: "198.18.0.100/24", Interface: "eth0", Held: true}},
		Peers:       []api.Peer{{Name: "lb2", Alive: true, LastHeardMs: 40, ConfigMatch: true}},
		Adverts:     api.Adverts{Sent: 10, Received: 9, Dropped: map[string]uint64{"decrypt": 2}},
		Clusters: []api.Cluster{{Name: "web", ActiveConns: 4, TotalConns: 100, BytesIn: 5, BytesOut: 7, Serving: true,
			Refused: map[string]uint64{"allow": 1},
			Servers: []api.Server{{Name: "web1", Healthy: true, Admin: "draining", ActiveConns: 2, TotalConns: 50, LastCheckLatency: 1.5}}}},
	}
	rec := httptest.NewRecorder()
	Handler(st).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`tandem_state{state="MASTER"} 1`,
		`tandem_state{state="BACKUP"} 0`,
		`tandem_priority 150`,
		`tandem_transitions_total 3`,
		`tandem_vip_held{vip="198.18.0.100/24"} 1`,
		`tandem_peer_alive{peer="lb2"} 1`,
		`tandem_peer_last_heard_seconds{peer="lb2"} 0.04`,
		`tandem_packets_dropped_total{reason="decrypt"} 2`,
		`tandem_cluster_active_connections{cluster="web"} 4`,
		`tandem_cluster_bytes_total{cluster="web",direction="out"} 7`,
		`tandem_cluster_refused_total{cluster="web",reason="allow"} 1`,
		`tandem_server_up{cluster="web",server="web1"} 1`,
		`tandem_server_admin{cluster="web",server="web1",state="draining"} 1`,
		`tandem_server_connections_total{cluster="web",server="web1"} 50`,
		`tandem_server_check_latency_seconds{cluster="web",server="web1"} 0.0015`,
		`tandem_persistence_entries 500`,
		`tandem_persistence_lag_seconds 0.012`,
		`tandem_persistence_sync_state{state="IN SYNC"} 1`,
		`tandem_persistence_sync_state{state="NOT SYNCED"} 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

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
		for deadline := time.Now().Add(5 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if m := regexp.MustCompile(`msg="metrics listening" addr=(\S+)`).FindStringSubmatch(logs.String()); m != nil {
				addr = m[1]
			}
		}
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
