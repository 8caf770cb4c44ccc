package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

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
