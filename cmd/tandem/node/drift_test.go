package node

import (
	"slices"
	"testing"

	"github.com/tandem-lb/tandem/pkg/config"
)

func testConfig(name string, prio int) *config.Config {
	c := config.Default()
	c.Node.Name = name
	c.Cluster.Bind = "198.18.0.11:7946"
	c.Cluster.Peers = []string{"198.18.0.12:7946"}
	c.Cluster.Insecure = true
	c.Failover.Interface = "eth0"
	c.Failover.Priority = prio
	c.Failover.VIPs = []string{"198.18.0.100/24"}
	c.Clusters = []config.VirtualCluster{{Name: "web", VIP: "198.18.0.100", Port: 80, Protocol: "tcp",
		Algorithm: "round_robin", Servers: []config.Server{{Name: "web1", Address: "198.18.0.21:80", Weight: 1}}}}
	return &c
}

func TestConfigDriftNamesTheSections(t *testing.T) {
	lb1, lb2 := testConfig("lb1", 150), testConfig("lb2", 100)
	a, b := advertHash(lb1), advertHash(lb2)
	if len(a) > 128 {
		t.Fatalf("advertised hash is %d bytes, the advert allows 128: %q", len(a), a)
	}
	if d := configDiff(a, b); d != nil {
		t.Fatalf("node-specific keys differ only, yet diff = %v", d)
	}
	lb2.Clusters[0].Servers[0].Address = "198.18.0.22:80"
	if d := configDiff(a, advertHash(lb2)); !slices.Equal(d, []string{"clusters"}) {
		t.Fatalf("a changed server: diff = %v, want [clusters]", d)
	}
	lb2.Failover.AdvertInterval *= 2
	if d := configDiff(a, advertHash(lb2)); !slices.Equal(d, []string{"failover", "clusters"}) {
		t.Fatalf("and a changed advert interval: diff = %v", d)
	}
	if d := configDiff(a, "sha256:0000"); !slices.Equal(d, []string{"config"}) {
		t.Fatalf("a bare foreign hash: diff = %v, want [config]", d)
	}
}
