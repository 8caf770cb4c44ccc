package node

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-lb/tandem/pkg/api"
	"github.com/tandem-lb/tandem/pkg/config"
)

func TestChangedKeys(t *testing.T) {
	a := config.Node{Name: "lb1", APISocket: "/run/a.sock", LogLevel: "info"}
	b := a
	b.APISocket, b.LogLevel = "/run/b.sock", "debug"
	if got, want := changedKeys("node", a, b), []string{"node.api_socket", "node.log_level"}; !slices.Equal(got, want) {
		t.Errorf("changedKeys = %v, want %v", got, want)
	}
	if got := changedKeys("node", a, a); got != nil {
		t.Errorf("changedKeys of equal structs = %v", got)
	}
}

// TestNeedsRestart refuses what a running node cannot apply and lets
// the rest through.
func TestNeedsRestart(t *testing.T) {
	base := config.Default()
	base.Node.Name = "lb1"
	base.Failover.Interface = "eth0"
	base.Cluster.Insecure = true
	n := &Node{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, tt := range []struct {
		name   string
		change func(c *config.Config)
		key    string // "" when allowed
	}{
		{"priority", func(c *config.Config) { c.Failover.Priority++ }, ""},
		{"vips", func(c *config.Config) { c.Failover.VIPs = []string{"198.18.0.101/24"} }, ""},
		{"notify", func(c *config.Config) { c.Failover.Notify = "/bin/true" }, ""},
		{"node name", func(c *config.Config) { c.Node.Name = "lb9" }, "node.name"},
		{"interface", func(c *config.Config) { c.Failover.Interface = "eth1" }, "failover.interface"},
		{"bind", func(c *config.Config) { c.Cluster.Bind = "198.18.9.1:7946" }, "cluster.bind"},
		{"label", func(c *config.Config) { c.Cluster.Label = "other" }, "cluster.label"},
		{"insecure to keyed", func(c *config.Config) { c.Cluster.Secret = testSecret }, "the cluster switches between encrypted and insecure"},
		{"persistence without replication", func(c *config.Config) {
			c.Clusters = []config.VirtualCluster{{Name: "s", Persistence: &config.Persistence{}}}
		}, "clusters[0].persistence"},
	} {
		c := base
		tt.change(&c)
		err := n.needsRestart(&base, &c)
		switch {
		case tt.key == "" && err != nil:
			t.Errorf("%s: refused: %v", tt.name, err)
		case tt.key != "" && (err == nil || !strings.Contains(err.Error(), "restart needed: "+tt.key)):
			t.Errorf("%s: err = %v, want restart needed: %s", tt.name, err, tt.key)
		}
	}
}

// TestReloadRefusesInvalidFile keeps the running config and reports
// every problem with its FILE:LINE.
func TestReloadRefusesInvalidFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lb1.yaml")
	if err := os.WriteFile(path, []byte("node:\n  name: lb1\nfailover:\n  priority: 999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.File = path
	n := &Node{log: slog.New(slog.NewTextHandler(io.Discard, nil)), runner: newClusterRunner(slog.New(slog.DiscardHandler))}
	n.cur.Store(&generation{cfg: &cfg})
	if _, err := n.Reload(); err == nil || !strings.Contains(err.Error(), "starting or stopping") {
		t.Fatalf("reload before Run: %v", err)
	}
	n.runner.open(t.Context())
	_, err := n.Reload()
	if err == nil {
		t.Fatal("an invalid file was accepted")
	}
	var re *api.ReloadError
	if !errors.As(err, &re) || !strings.Contains(re.Msg, "problem(s); the running config is kept") ||
		!slices.ContainsFunc(re.Problems, func(p string) bool { return strings.HasPrefix(p, path+":4: failover.priority") }) {
		t.Fatalf("err = %v, problems %q; want %s:4: failover.priority: ...", err, re.Problems, path)
	}
	if n.gen().cfg != &cfg {
		t.Error("the running config was replaced")
	}
}
