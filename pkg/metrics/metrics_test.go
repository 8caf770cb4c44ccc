package metrics

import (
	"io"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tandem-lb/tandem/pkg/api"
)

type fixed api.Status

func (f fixed) Status() api.Status { return api.Status(f) }

func TestMetricsExposeTheStatus(t *testing.T) {
	st := fixed{
		Node: "lb1", State: "MASTER", Priority: 150, TransitionsTotal: 3,
		Persistence: api.Persistence{Enabled: true, Entries: 500, State: "IN SYNC", LagMs: 12,
			ConntrackEntries: 200, FlowsSent: 340, FlowErrors: map[string]uint64{"write": 1}},
		VIPs:    []api.VIP{{Address: "198.18.0.100/24", Interface: "eth0", Held: true}},
		Peers:   []api.Peer{{Name: "lb2", Alive: true, LastHeardMs: 40, ConfigMatch: true}},
		Adverts: api.Adverts{Sent: 10, Received: 9, Dropped: map[string]uint64{"decrypt": 2}},
		SplitBrain: api.SplitBrain{ARPRead: 12, ARPMalformed: 2, Rivals: 3,
			Witness: &api.Witness{Address: "198.18.0.1", Reachable: true}},
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
		`tandem_arp_frames_total{result="malformed"} 2`,
		`tandem_arp_frames_total{result="ok"} 10`,
		`tandem_rival_announcements_total 3`,
		`tandem_witness_reachable{witness="198.18.0.1"} 1`,
		`tandem_persistence_sync_state{state="NOT SYNCED"} 0`,
		`tandem_conntrack_entries 200`,
		`tandem_conntrack_flows_sent_total 340`,
		`tandem_conntrack_flow_errors_total{reason="write"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// The soak (scripts/soak.sh) watches these for leaks: each must be present
// and plausible, read at scrape time.
func TestMetricsExposeRuntimeAndProcess(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler(fixed{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	values := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || strings.HasPrefix(line, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			values[f[0]] = v
		}
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes"} {
		if v, ok := values[name]; !ok || v <= 0 {
			t.Errorf("%s = %v (present %v), want > 0", name, v, ok)
		}
	}
	if _, err := os.Stat("/proc/self/statm"); err != nil {
		t.Skip("no /proc: process metrics are not collected here")
	}
	for _, name := range []string{"process_resident_memory_bytes", "process_open_fds"} {
		if v, ok := values[name]; !ok || v <= 0 {
			t.Errorf("%s = %v (present %v), want > 0", name, v, ok)
		}
	}
	// the RSS is this test process's: at least a megabyte, below 16 GiB
	if v := values["process_resident_memory_bytes"]; v < 1<<20 || v > 16<<30 {
		t.Errorf("process_resident_memory_bytes = %v, not this process's RSS", v)
	}
}
