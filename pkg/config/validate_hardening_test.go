package config

import (
	"strings"
	"testing"
)

func validInCode() Config {
	c := Default()
	c.Node.Name = "lb1"
	c.Cluster = Cluster{Bind: "198.18.0.11:7946", Peers: []string{"198.18.0.12:7946"}, Insecure: true, Label: "tandem"}
	c.Failover.Interface = "eth0"
	c.Failover.VIPs = []string{"198.18.0.100/24"}
	c.Clusters = []VirtualCluster{{Name: "web", VIP: "198.18.0.100", Port: 80,
		Servers: []Server{{Name: "web1", Address: "198.18.0.21:80"}}}}
	c.ApplyDefaults()
	return c
}

func TestRunAsMustExist(t *testing.T) {
	c := validInCode()
	c.Failover.NotifyRunAs = "root"
	c.Clusters[0].HealthCheck = &HealthCheck{Type: "exec", Command: "true", RunAs: "0", Interval: 1e9, Timeout: 5e8, Rise: 1, Fall: 1}
	if err := c.Validate(); err != nil {
		t.Fatalf("root and uid 0: %v", err)
	}
	c.Failover.NotifyRunAs = "no-such-user-here"
	c.Clusters[0].HealthCheck.RunAs = "4294967"
	got := errString(c.Validate())
	for _, want := range []string{`failover.notify_run_as: no such user "no-such-user-here"`,
		`clusters[0].health_check.run_as: no such user "4294967"`} {
		if !strings.Contains(got, want) {
			t.Errorf("Validate = %q, want %q in it", got, want)
		}
	}
}

func TestVIPNotAHeartbeatBind(t *testing.T) {
	c := validInCode()
	c.Cluster.HeartbeatPaths = []HeartbeatPath{{Bind: "198.19.0.11:7946", Peer: "198.19.0.12:7946"}}
	c.Failover.VIPs = append(c.Failover.VIPs, "198.19.0.11/24")
	if got := errString(c.Validate()); !strings.Contains(got, "failover.vips[1]: 198.19.0.11 is this box's own address (cluster.heartbeat_paths[0].bind)") {
		t.Fatalf("Validate = %q", got)
	}
}
