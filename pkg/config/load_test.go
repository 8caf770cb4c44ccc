package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testKey is base64 of the 32 bytes "tandem-example-key-do-not-use!!!".
const testKey = "dGFuZGVtLWV4YW1wbGUta2V5LWRvLW5vdC11c2UhISE="

// base is a valid config; the tests edit it line by line, so its line
// numbers (in the comments) are what the expected problems point at.
const base = `node:
  name: lb1
  api_socket: /run/tandem/lb1.sock
  log_level: info
cluster:
  bind: 198.18.0.11:7946
  peers: [198.18.0.12:7946]
  secret: ` + testKey + `
failover:
  interface: eth0
  priority: 150
  advert_interval: 50ms
  vips: [198.18.0.100/24]
  garp:
    count: 3
clusters:
  - name: web
    vip: 198.18.0.100
    port: 80
    health_check:
      type: http
      path: /
    persistence:
      mode: source_ip
      timeout: 10m
    servers:
      - name: web1
        address: 198.18.0.21:80
      - name: web2
        address: 198.18.0.22:80
        weight: 5
`

// edit applies old→new replacements to base; each old must occur once.
func edit(t *testing.T, repl ...string) string {
	t.Helper()
	return editOf(t, base, repl...)
}

// editOf applies old→new replacements to s; each old must occur once.
func editOf(t *testing.T, s string, repl ...string) string {
	t.Helper()
	for i := 0; i+1 < len(repl); i += 2 {
		if strings.Count(s, repl[i]) != 1 {
			t.Fatalf("edit: %q occurs %d times in base", repl[i], strings.Count(s, repl[i]))
		}
		s = strings.Replace(s, repl[i], repl[i+1], 1)
	}
	return s
}

// writeConfig writes src to a file in a fresh directory and returns its
// path.
func writeConfig(t *testing.T, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lb.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// problems loads src and returns the problems as printed, FILE standing
// for the config's path.
func problems(t *testing.T, src string) []string {
	t.Helper()
	path := writeConfig(t, src)
	c, err := Load(path)
	if err == nil {
		return nil
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Load: %v is not an Errors", err)
	}
	if c == nil {
		t.Fatalf("Load returned no config with %v", err)
	}
	out := strings.Split(strings.ReplaceAll(err.Error(), path, "FILE"), "\n")
	for i := range out {
		out[i] = strings.ReplaceAll(out[i], filepath.Dir(path), "DIR")
	}
	return out
}

func TestLoadValidAppliesDefaults(t *testing.T) {
	c, err := Load(writeConfig(t, base))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	vc := c.Clusters[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"node.log_level", c.Node.LogLevel, "info"},
		{"node.metrics_listen", c.Node.MetricsListen, ""},
		{"cluster.label", c.Cluster.Label, "tandem"},
		{"failover.preempt", c.Failover.Preempt, true},
		{"failover.garp.interval", c.Failover.GARP.Interval, 100 * time.Millisecond},
		{"failover.track_interfaces", strings.Join(c.Failover.TrackInterfaces, ","), "eth0"},
		{"protocol", vc.Protocol, "tcp"},
		{"algorithm", vc.Algorithm, "round_robin"},
		{"servers[0].weight", vc.Servers[0].Weight, 1},
		{"servers[1].weight", vc.Servers[1].Weight, 5},
		{"persistence.mask", vc.Persistence.Mask, 32},
		{"persistence.timeout", vc.Persistence.Timeout, 10 * time.Minute},
		{"health_check.interval", vc.HealthCheck.Interval, time.Second},
		{"health_check.timeout", vc.HealthCheck.Timeout, 500 * time.Millisecond},
		{"health_check.rise", vc.HealthCheck.Rise, 2},
		{"health_check.fall", vc.HealthCheck.Fall, 2},
		{"health_check.expect_status", vc.HealthCheck.ExpectStatus, 200},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if c.File == "" {
		t.Error("File not set")
	}
	key, err := c.ClusterKey()
	if err != nil || string(key) != "tandem-example-key-do-not-use!!!" {
		t.Errorf("ClusterKey = %q, %v", key, err)
	}
	if p := c.Failover.Prefixes(); len(p) != 1 || p[0].String() != "198.18.0.100/24" {
		t.Errorf("Prefixes = %v", p)
	}
}

func TestLoadIPv6PersistenceMask(t *testing.T) {
	src := edit(t,
		"vips: [198.18.0.100/24]", `vips: [198.18.0.100/24, "::1/128"]`,
		"vip: 198.18.0.100", `vip: "::1"`)
	c, err := Load(writeConfig(t, src))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if m := c.Clusters[0].Persistence.Mask; m != 128 {
		t.Errorf("mask = %d, want 128 for an IPv6 VIP", m)
	}
}

func TestLoadExplicitZeroIsNotDefaulted(t *testing.T) {
	src := edit(t, "        weight: 5", "        weight: 0")
	want := []string{"FILE:31: clusters[0].servers[1].weight: must be 1..256 (got 0)"}
	assertProblems(t, problems(t, src), want)
}

func TestLoadDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"unknown key", edit(t, "    count: 3", "    cuont: 3"),
			[]string{"FILE:15: failover.garp.cuont: unknown key (did you mean count?)"}},
		{"unknown top-level key", base + "extra: 1\n",
			[]string{"FILE:32: extra: unknown key"}},
		{"unknown key in a server", edit(t, "        weight: 5", "        wieght: 5"),
			[]string{"FILE:31: clusters[0].servers[1].wieght: unknown key (did you mean weight?)"}},
		{"wrong type", edit(t, "priority: 150", "priority: high"),
			[]string{`FILE:11: failover.priority: expected an integer, got "high"`}},
		{"duration without unit", edit(t, "advert_interval: 50ms", "advert_interval: 50"),
			[]string{"FILE:12: failover.advert_interval: a duration needs a unit, like 500ms or 2s (got 50)"}},
		{"bad duration", edit(t, "timeout: 10m", "timeout: soon"),
			[]string{`FILE:25: clusters[0].persistence.timeout: expected a duration like 500ms or 2s, got "soon"`}},
		{"list for a scalar", edit(t, "    port: 80", "    port: [80]"),
			[]string{"FILE:19: clusters[0].port: expected an integer, got a list"}},
		{"scalar for a mapping", edit(t, "  garp:\n    count: 3", "  garp: 3\n  preempt: true"),
			[]string{"FILE:14: failover.garp: expected a mapping of keys, got the number 3"}},
		{"bool for a string", edit(t, "  interface: eth0", "  interface: true"),
			[]string{"FILE:10: failover.interface: expected a string, got true"}},
		{"all reported", edit(t, "priority: 150", "priority: high", "    count: 3", "    cuont: 3", "port: 80", "port: 0"), []string{
			`FILE:11: failover.priority: expected an integer, got "high"`,
			"FILE:15: failover.garp.cuont: unknown key (did you mean count?)",
			"FILE:19: clusters[0].port: must be 1..65535 (got 0)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertProblems(t, problems(t, tt.src), tt.want)
		})
	}
}

func TestLoadYAMLSyntaxError(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		// yaml.v3 reports a parser error on the line before the construct
		// it was parsing (its context mark is 0-based); we pass it on as is.
		{"unclosed list", edit(t, "  priority: 150", "  priority: [150"),
			"FILE:10: invalid YAML: did not find expected ',' or ']'"},
		{"duplicate key", edit(t, "  priority: 150", "  priority: 150\n  priority: 100"),
			`FILE:12: invalid YAML: mapping key "priority" already defined at line 11`},
		{"not a mapping", "- node\n- cluster\n",
			"FILE:1: invalid YAML: the top level must be a mapping of keys (node:, cluster:, failover:, clusters:)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.src)
			c, err := Load(path)
			if c != nil || err == nil {
				t.Fatalf("Load = %v, %v; want no config and an error", c, err)
			}
			if got := strings.ReplaceAll(err.Error(), path, "FILE"); got != tt.want {
				t.Errorf("error = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want ErrNotExist", err)
	}
}

func TestLoadEnv(t *testing.T) {
	t.Run("overrides a key in the file", func(t *testing.T) {
		// The file's secret is no key; the environment's is.
		t.Setenv("TANDEM_CLUSTER_SECRET", testKey)
		c, err := Load(writeConfig(t, edit(t, "secret: "+testKey, "secret: not-a-key")))
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if c.Cluster.Secret != testKey {
			t.Errorf("secret = %q, want the environment's", c.Cluster.Secret)
		}
	})
	t.Run("sets keys absent from the file", func(t *testing.T) {
		t.Setenv("TANDEM_CLUSTER_SECRET", testKey)
		t.Setenv("TANDEM_NODE_NAME", "lb9")
		t.Setenv("TANDEM_FAILOVER_PREEMPT", "false")
		t.Setenv("TANDEM_FAILOVER_PREEMPT_DELAY", "2s")
		t.Setenv("TANDEM_FAILOVER_GARP_REFRESH", "30s")
		t.Setenv("TANDEM_CLUSTER_PEERS", "198.18.0.12:7946, 198.18.0.13:7946")
		src := edit(t, "  name: lb1\n", "", "  secret: "+testKey+"\n", "")
		c, err := Load(writeConfig(t, src))
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		f := c.Failover
		if c.Node.Name != "lb9" || f.Preempt || f.PreemptDelay != 2*time.Second || f.GARP.Refresh != 30*time.Second ||
			strings.Join(c.Cluster.Peers, " ") != "198.18.0.12:7946 198.18.0.13:7946" {
			t.Errorf("env not applied: node %+v cluster %+v failover %+v", c.Node, c.Cluster, f)
		}
	})
	t.Run("bad value names the variable", func(t *testing.T) {
		t.Setenv("TANDEM_FAILOVER_PRIORITY", "high")
		t.Setenv("TANDEM_FAILOVER_ADVERT_INTERVAL", "1ms")
		want := []string{
			`FILE: failover.priority: expected an integer, got "high" (from $TANDEM_FAILOVER_PRIORITY)`,
			"FILE: failover.advert_interval: must be between 10ms and 10s (got 1ms) (from $TANDEM_FAILOVER_ADVERT_INTERVAL)",
		}
		assertProblems(t, problems(t, base), want)
	})
}

func assertProblems(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n got  %s\n want %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}
