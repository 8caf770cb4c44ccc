package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// loadPair loads configs/lb1.yaml and lb2.yaml with their secret_file
// pointed at a temporary key through the environment.
func loadPair(t *testing.T) (lb1, lb2 *Config) {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(keyFile, []byte(testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TANDEM_CLUSTER_SECRET_FILE", keyFile)
	var cs [2]*Config
	for i, name := range []string{"lb1.yaml", "lb2.yaml"} {
		c, err := Load(filepath.Join("..", "..", "configs", name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cs[i] = c
	}
	return cs[0], cs[1]
}

func TestExampleConfigsValidate(t *testing.T) {
	lb1, lb2 := loadPair(t)
	if lb1.Node.Name != "lb1" || lb1.Failover.Priority != 150 || lb2.Node.Name != "lb2" || lb2.Failover.Priority != 100 {
		t.Errorf("pair: lb1 %+v %+v, lb2 %+v %+v", lb1.Node, lb1.Failover, lb2.Node, lb2.Failover)
	}
	if lb1.Cluster.Peers[0] != lb2.Cluster.Bind || lb2.Cluster.Peers[0] != lb1.Cluster.Bind {
		t.Errorf("lb1 and lb2 are not each other's peers")
	}
}

// TestExampleFullShowsEveryKey checks that example-full.yaml validates as
// is and documents every key: each struct field must appear in it.
func TestExampleFullShowsEveryKey(t *testing.T) {
	c, err := Load(filepath.Join("..", "..", "configs", "example-full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{
		"node.name", "node.api_socket", "node.api_group", "node.metrics_listen", "node.log_level",
		"cluster.bind", "cluster.peers", "cluster.secret", "cluster.secret_file", "cluster.accept_secrets", "cluster.insecure", "cluster.label",
		"failover.interface", "failover.priority", "failover.preempt", "failover.preempt_delay",
		"failover.advert_interval", "failover.vips", "failover.garp.count", "failover.garp.interval",
		"failover.garp.refresh", "failover.track_interfaces", "failover.notify",
		"clusters[0].name", "clusters[0].vip", "clusters[0].port", "clusters[0].protocol", "clusters[0].algorithm",
		"clusters[0].allow", "clusters[0].max_conns", "clusters[0].persistence.mode", "clusters[0].persistence.mask",
		"clusters[0].persistence.timeout", "clusters[0].health_check.type", "clusters[0].health_check.path",
		"clusters[0].health_check.expect_status", "clusters[0].health_check.expect_body",
		"clusters[0].health_check.interval", "clusters[0].health_check.timeout", "clusters[0].health_check.rise",
		"clusters[0].health_check.fall", "clusters[0].servers[0].name", "clusters[0].servers[0].address",
		"clusters[0].servers[0].weight", "clusters[0].servers[0].send_proxy",
		"clusters[2].source_addresses",
		"outbound.interface", "outbound.sources", "outbound.snat_address", "outbound.allow",
	} {
		if c.lines[key] == 0 {
			t.Errorf("example-full.yaml does not show %s", key)
		}
	}
	nat := false
	for i, vc := range c.Clusters {
		if vc.IsNAT() {
			nat = true
			k := "clusters[" + strconv.Itoa(i) + "]"
			for _, key := range []string{".mode", ".nat.return", ".nat.snat_address", ".nat.drain"} {
				if c.lines[k+key] == 0 {
					t.Errorf("example-full.yaml does not show %s", k+key)
				}
			}
		}
	}
	if !nat {
		t.Error("example-full.yaml has no mode: nat cluster")
	}
	types := map[string]bool{}
	for _, vc := range c.Clusters {
		if vc.HealthCheck != nil {
			types[vc.HealthCheck.Type] = true
		}
	}
	for _, typ := range HealthChecks {
		if !types[typ] {
			t.Errorf("example-full.yaml has no %s health check", typ)
		}
	}
	// Every health_check key is shown in some cluster.
	for f := range reflect.TypeFor[HealthCheck]().Fields() {
		key, shown := f.Tag.Get("mapstructure"), false
		for i := range c.Clusters {
			if c.lines["clusters["+strconv.Itoa(i)+"].health_check."+key] != 0 {
				shown = true
			}
		}
		if !shown {
			t.Errorf("example-full.yaml shows health_check.%s in no cluster", key)
		}
	}
}

func TestHash(t *testing.T) {
	lb1, lb2 := loadPair(t)
	h1, h2 := lb1.Hash(), lb2.Hash()
	if !strings.HasPrefix(h1, "sha256:") || len(h1) != len("sha256:")+64 {
		t.Fatalf("Hash = %q, want sha256:<64 hex>", h1)
	}
	if h1 != h2 {
		t.Errorf("lb1 and lb2 hash differently: %s vs %s", h1, h2)
	}

	changed := *lb2
	changed.Clusters = append([]VirtualCluster(nil), lb2.Clusters...)
	changed.Clusters[0].Servers = append([]Server(nil), lb2.Clusters[0].Servers...)
	changed.Clusters[0].Servers[1].Weight = 2
	if changed.Hash() == h1 {
		t.Error("a changed server weight does not change the hash")
	}
	s1, s2 := lb1.SectionHashes(), changed.SectionHashes()
	for _, sec := range []string{"cluster", "failover"} {
		if s1[sec] != s2[sec] {
			t.Errorf("section %s differs though unchanged", sec)
		}
	}
	if s1["clusters"] == s2["clusters"] {
		t.Error("section clusters does not reflect the change")
	}

	shared := *lb2
	shared.Failover.AdvertInterval = 100 * time.Millisecond
	if shared.Hash() == h1 || shared.SectionHashes()["failover"] == s1["failover"] {
		t.Error("a changed advert_interval does not change the hash")
	}
	// An empty allow list means the same as none.
	empty := *lb1
	empty.Clusters = append([]VirtualCluster(nil), lb1.Clusters...)
	empty.Clusters[0].Allow = []string{}
	if empty.Hash() != h1 {
		t.Error("allow: [] hashes differently from no allow")
	}
}

func TestMasterDownInterval(t *testing.T) {
	tests := []struct {
		advert   time.Duration
		priority int
		want     time.Duration
	}{
		{50 * time.Millisecond, 150, 150*time.Millisecond + 106*50*time.Millisecond/256},
		{50 * time.Millisecond, 254, 150*time.Millisecond + 2*50*time.Millisecond/256},
		{time.Second, 1, 3*time.Second + 255*time.Second/256},
	}
	for _, tt := range tests {
		c := Default()
		c.Failover.AdvertInterval, c.Failover.Priority = tt.advert, tt.priority
		if got := c.MasterDownInterval(); got != tt.want {
			t.Errorf("advert %s priority %d: %s, want %s", tt.advert, tt.priority, got, tt.want)
		}
	}
}
