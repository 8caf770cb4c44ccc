package config

import (
	"encoding/base64"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
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

func TestCountsBounded(t *testing.T) {
	c := validInCode()
	servers := make([]Server, MaxServers+1)
	for i := range servers {
		servers[i] = Server{Name: "s" + strconv.Itoa(i), Address: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 80).String(), Weight: 1}
	}
	c.Clusters[0].Servers = servers
	if got := errString(c.Validate()); !strings.Contains(got, "clusters[0].servers: 65537 servers, at most 65536") {
		t.Fatalf("Validate = %.300q", got)
	}
}

// TestExampleKeyAndReadableSecrets: the published example key is named
// (run and reload refuse it), and secrets others can read are warned
// about.
func TestExampleKeyAndReadableSecrets(t *testing.T) {
	dir := t.TempDir()
	c := validInCode()
	c.Cluster.Insecure = false
	c.Cluster.Secret = testKey // the example key
	if err := c.ExampleKeyInUse(); err == nil || !strings.Contains(err.Error(), "tandem keygen") {
		t.Fatalf("ExampleKeyInUse = %v", err)
	}
	c.File = filepath.Join(dir, "tandem.yaml")
	if err := os.WriteFile(c.File, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings(), "\n")
	if !strings.Contains(w, "example key") || !strings.Contains(w, "holds a secret and others may read it") {
		t.Fatalf("warnings:\n%s", w)
	}
	os.Chmod(c.File, 0o640)
	key := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(key, []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Cluster.Secret, c.Cluster.SecretFile = "", key
	if err := c.ExampleKeyInUse(); err != nil {
		t.Fatalf("a real key refused: %v", err)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "others may read the cluster key") {
		t.Fatalf("warnings: %q", w)
	}
	os.Chmod(key, 0o640)
	if w := c.Warnings(); len(w) != 0 {
		t.Fatalf("warnings for safe files: %q", w)
	}
}
