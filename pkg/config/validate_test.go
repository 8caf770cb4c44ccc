package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateProblems edits the valid base config (see load_test.go for
// its line numbers) to break one rule at a time and asserts the exact
// line printed for it.
func TestValidateProblems(t *testing.T) {
	const web2 = "      - name: web2\n        address: 198.18.0.22:80\n        weight: 5\n"
	// A second cluster, appended after line 31.
	second := func(lines ...string) string {
		return base + "  - " + strings.Join(lines, "\n    ") + "\n"
	}
	tests := []struct {
		name string
		src  string
		want []string
	}{
		// node
		{"name missing", edit(t, "  name: lb1\n", ""),
			[]string{"FILE:1: node.name: required: this node's name, unique in the pair"}},
		{"name with space", edit(t, "name: lb1", `name: "lb 1"`),
			[]string{`FILE:2: node.name: must not contain spaces (got "lb 1")`}},
		{"log level", edit(t, "log_level: info", "log_level: loud"),
			[]string{`FILE:4: node.log_level: must be one of debug, info, warn, error (got "loud")`}},
		{"api socket relative", edit(t, "api_socket: /run/tandem/lb1.sock", "api_socket: lb1.sock"),
			[]string{`FILE:3: node.api_socket: must be an absolute path (got "lb1.sock")`}},
		{"metrics listen", edit(t, "  log_level: info", `  metrics_listen: "9110"`),
			[]string{`FILE:4: node.metrics_listen: must be empty or host:port: got "9110"`}},
		// cluster
		{"bind missing", edit(t, "  bind: 198.18.0.11:7946\n", ""),
			[]string{"FILE:5: cluster.bind: required: this node's IP:port for the pair"}},
		{"bind not an IP", edit(t, "bind: 198.18.0.11:7946", "bind: lb1:7946"),
			[]string{`FILE:6: cluster.bind: must be IP:port, like 198.18.0.11:7946 (got "lb1:7946")`}},
		{"peers empty", edit(t, "peers: [198.18.0.12:7946]", "peers: []"),
			[]string{"FILE:7: cluster.peers: required: the other box's IP:port"}},
		{"peer is bind", edit(t, "peers: [198.18.0.12:7946]", "peers: [198.18.0.12:7946, 198.18.0.11:7946]"),
			[]string{"FILE:7: cluster.peers[1]: must not be this node's own cluster.bind 198.18.0.11:7946"}},
		{"peer without port", edit(t, "peers: [198.18.0.12:7946]", "peers: [198.18.0.12]"),
			[]string{`FILE:7: cluster.peers[0]: must be IP:port, like 198.18.0.11:7946 (got "198.18.0.12")`}},
		{"no key", edit(t, "  secret: "+testKey, "  insecure: false"),
			[]string{"FILE:5: cluster.secret: no cluster key: set cluster.secret or cluster.secret_file, or cluster.insecure: true"}},
		{"short key", edit(t, "secret: "+testKey, "secret: c2hvcnQ="),
			[]string{"FILE:8: cluster.secret: must be base64 of a 16, 24 or 32-byte key (`tandem keygen` makes one): got 5 bytes"}},
		{"key not base64", edit(t, "secret: "+testKey, `secret: "!!!"`),
			[]string{"FILE:8: cluster.secret: must be base64 of a 16, 24 or 32-byte key (`tandem keygen` makes one): not valid base64"}},
		{"secret and secret_file", edit(t, "  secret: "+testKey, "  secret: "+testKey+"\n  secret_file: /etc/tandem/cluster.key"),
			[]string{"FILE:9: cluster.secret_file: set either cluster.secret or cluster.secret_file, not both"}},
		{"secret_file missing", edit(t, "  secret: "+testKey, "  secret_file: /nonexistent/cluster.key"),
			[]string{"FILE:8: cluster.secret_file: cannot read the key: open /nonexistent/cluster.key: no such file or directory"}},
		{"heartbeat path on another port", edit(t, "  secret: "+testKey, "  secret: "+testKey+"\n  heartbeat_paths:\n    - bind: 198.19.0.11:7947\n      peer: 198.19.0.12:7946"),
			[]string{"FILE:10: cluster.heartbeat_paths[0].bind: must use cluster.bind's port 7946 (got 7947)"}},
		{"heartbeat path to the main peer", edit(t, "  secret: "+testKey, "  secret: "+testKey+"\n  heartbeat_paths:\n    - bind: 198.19.0.11:7946\n      peer: 198.18.0.12:7946"),
			[]string{"FILE:11: cluster.heartbeat_paths[0].peer: 198.18.0.12:7946 is already in cluster.peers: a second path needs the peer's address on that path"}},
		{"heartbeat path reusing bind", edit(t, "  secret: "+testKey, "  secret: "+testKey+"\n  heartbeat_paths:\n    - bind: 198.18.0.11:7946\n      peer: 198.19.0.12:7946"),
			[]string{"FILE:10: cluster.heartbeat_paths[0].bind: 198.18.0.11 is already used by cluster.bind"}},
		// failover
		{"witness not an IP", edit(t, "  priority: 150", "  priority: 150\n  witness: gateway"),
			[]string{`FILE:12: failover.witness: must be an IP address to ping, like the gateway's 198.18.0.1 (got "gateway")`}},
		{"negative hold-down", edit(t, "  priority: 150", "  priority: 150\n  link_holddown: -1s"),
			[]string{"FILE:12: failover.link_holddown: must be 0 (off) to 1m0s (got -1s)"}},
		{"interface missing", edit(t, "  interface: eth0\n", ""),
			[]string{"FILE:9: failover.interface: required: the interface the VIPs live on"}},
		{"priority 0", edit(t, "priority: 150", "priority: 0"),
			[]string{"FILE:11: failover.priority: must be 1..254 (got 0)"}},
		{"priority 255", edit(t, "priority: 150", "priority: 255"),
			[]string{"FILE:11: failover.priority: must be 1..254 (got 255)"}},
		{"advert too short", edit(t, "advert_interval: 50ms", "advert_interval: 5ms"),
			[]string{"FILE:12: failover.advert_interval: must be between 10ms and 10s (got 5ms)"}},
		{"advert too long", edit(t, "advert_interval: 50ms", "advert_interval: 11s"),
			[]string{"FILE:12: failover.advert_interval: must be between 10ms and 10s (got 11s)"}},
		{"negative preempt delay", edit(t, "  priority: 150", "  preempt_delay: -1s"),
			[]string{"FILE:11: failover.preempt_delay: must not be negative (got -1s)"}},
		{"vips empty", edit(t, "vips: [198.18.0.100/24]", "vips: []"), []string{
			"FILE:13: failover.vips: required: at least one VIP in CIDR form, like 198.18.0.100/24",
			"FILE:18: clusters[0].vip: 198.18.0.100 is not the address of any of failover.vips",
		}},
		{"vip is the box's own address", edit(t, "vips: [198.18.0.100/24]", "vips: [198.18.0.100/24, 198.18.0.11/24]"),
			[]string{"FILE:13: failover.vips[1]: 198.18.0.11 is this box's own address (cluster.bind): a VIP must be an address only the master holds, or its release would delete the box's address"}},
		{"vip not CIDR", edit(t, "vips: [198.18.0.100/24]", "vips: [198.18.0.100/24, 198.18.0.101]"),
			[]string{`FILE:13: failover.vips[1]: must be an address in CIDR form, like 198.18.0.100/24 (got "198.18.0.101")`}},
		{"vip duplicate", edit(t, "vips: [198.18.0.100/24]", "vips:\n    - 198.18.0.100/24\n    - 198.18.0.100/32"),
			[]string{"FILE:15: failover.vips[1]: duplicate of failover.vips[0] (198.18.0.100/24)"}},
		{"garp count", edit(t, "count: 3", "count: 101"),
			[]string{"FILE:15: failover.garp.count: must be 0..100 (got 101)"}},
		{"garp interval", edit(t, "    count: 3", "    count: 3\n    interval: 0s"),
			[]string{"FILE:16: failover.garp.interval: must be > 0 when count > 1 (got 0s)"}},
		{"garp interval unused with one", edit(t, "    count: 3", "    count: 1\n    interval: 0s"), nil},
		{"garp refresh", edit(t, "    count: 3", "    refresh: -1s"),
			[]string{"FILE:15: failover.garp.refresh: must not be negative (got -1s)"}},
		{"track empty entry", edit(t, "  priority: 150", `  track_interfaces: [eth0, ""]`),
			[]string{"FILE:11: failover.track_interfaces[1]: must not be empty"}},
		{"notify missing", edit(t, "  priority: 150", "  notify: /nonexistent/notify"),
			[]string{"FILE:11: failover.notify: /nonexistent/notify does not exist"}},
		{"notify directory", edit(t, "  priority: 150", "  notify: /"),
			[]string{"FILE:11: failover.notify: / is not a regular file"}},
		// clusters
		{"cluster name missing", edit(t, "  - name: web\n    vip", "  - vip"),
			[]string{"FILE:17: clusters[0].name: required"}},
		{"cluster name duplicate", second("name: web", "vip: 198.18.0.100", "port: 81", "servers: [{name: a, address: 198.18.0.23:80}]"),
			[]string{`FILE:32: clusters[1].name: duplicate of clusters[0].name "web"`}},
		{"cluster vip not a VIP", edit(t, "vip: 198.18.0.100", "vip: 198.18.0.101"),
			[]string{"FILE:18: clusters[0].vip: 198.18.0.101 is not the address of any of failover.vips"}},
		{"cluster vip with prefix", edit(t, "vip: 198.18.0.100", "vip: 198.18.0.100/24"),
			[]string{`FILE:18: clusters[0].vip: must be an IP address, like 198.18.0.100 (got "198.18.0.100/24")`}},
		{"cluster vip missing", edit(t, "    vip: 198.18.0.100\n", ""),
			[]string{"FILE:17: clusters[0].vip: required: one of failover.vips, address only"}},
		{"port", edit(t, "port: 80", "port: 65536"),
			[]string{"FILE:19: clusters[0].port: must be 1..65535 (got 65536)"}},
		{"protocol", edit(t, "    port: 80", "    port: 80\n    protocol: sctp"),
			[]string{`FILE:20: clusters[0].protocol: must be tcp, udp or http (got "sctp")`}},
		{"port missing", edit(t, "    port: 80\n", ""),
			[]string{"FILE:17: clusters[0].port: must be 1..65535 (got 0)"}},
		{"algorithm", edit(t, "    port: 80", "    port: 80\n    algorithm: fastest"),
			[]string{`FILE:20: clusters[0].algorithm: must be one of round_robin, weighted_round_robin, least_conn, source_hash, random_two, fastest_response (got "fastest")`}},
		{"allow", edit(t, "    port: 80", "    port: 80\n    allow: [198.18.0.0/15, 198.18.0.0/99]"),
			[]string{`FILE:20: clusters[0].allow[1]: must be a CIDR prefix, like 198.18.0.0/15 (got "198.18.0.0/99")`}},
		{"source addresses on tcp", edit(t, "    port: 80", "    port: 80\n    source_addresses: [198.18.0.11]"),
			[]string{`FILE:20: clusters[0].source_addresses: only for protocol: udp clusters (this one is "tcp")`}},
		{"source address", edit(t, "    port: 80", "    port: 80\n    protocol: udp\n    source_addresses: [198.18.0.11, 198.18.0.300, 0.0.0.0, 198.18.0.11]"),
			[]string{`FILE:21: clusters[0].source_addresses[1]: must be a local unicast IP address, like 198.18.0.11 (got "198.18.0.300")`,
				`FILE:21: clusters[0].source_addresses[2]: must be a local unicast IP address, like 198.18.0.11 (got "0.0.0.0")`,
				`FILE:21: clusters[0].source_addresses[3]: duplicate address 198.18.0.11`}},
		{"source address family", edit(t, "    port: 80", "    port: 80\n    protocol: udp\n    source_addresses: [\"2001:db8::1\"]"),
			[]string{`FILE:21: clusters[0].source_addresses[0]: 2001:db8::1 is not of the family of server web1 (198.18.0.21:80)`}},
		{"max conns", edit(t, "    port: 80", "    port: 80\n    max_conns: -1"),
			[]string{"FILE:20: clusters[0].max_conns: must not be negative (got -1)"}},
		{"same listener", second("name: web-again", "vip: 198.18.0.100", "port: 80", "servers: [{name: a, address: 198.18.0.23:80}]"),
			[]string{"FILE:32: clusters[1]: listens on 198.18.0.100 port 80/tcp like clusters[0] (web)"}},
		{"same port other protocol", second("name: web-udp", "vip: 198.18.0.100", "port: 80", "protocol: udp", "servers: [{name: a, address: 198.18.0.23:80}]"), nil},
		{"persistence mode", edit(t, "mode: source_ip", "mode: sessionid"),
			[]string{`FILE:24: clusters[0].persistence.mode: must be source_ip or cookie (got "sessionid")`}},
		{"persistence cookie on tcp", edit(t, "mode: source_ip", "mode: cookie"),
			[]string{`FILE:24: clusters[0].persistence.mode: cookie is only for protocol: http clusters (this one is "tcp")`}},
		{"persistence mask v4", edit(t, "mode: source_ip", "mode: source_ip\n      mask: 33"),
			[]string{"FILE:25: clusters[0].persistence.mask: must be 0..32 for an IPv4 VIP (got 33)"}},
		{"persistence timeout missing", edit(t, "      timeout: 10m\n", ""),
			[]string{"FILE:23: clusters[0].persistence.timeout: must be > 0, like 10m (got 0s)"}},
		// health checks
		{"check type", edit(t, "type: http", "type: ping"),
			[]string{`FILE:21: clusters[0].health_check.type: must be one of tcp, http, send_expect, dns, udp, radius, ldap, smtp, exec (got "ping")`}},
		{"http path", edit(t, "path: /", "path: health"),
			[]string{`FILE:22: clusters[0].health_check.path: http check needs a path starting with / (got "health")`}},
		{"http status", edit(t, "path: /", "path: /\n      expect_status: 99"),
			[]string{"FILE:23: clusters[0].health_check.expect_status: must be an HTTP status 100..599 (got 99)"}},
		// A banner check (SMTP "^220") sends nothing; a udp check must.
		{"send_expect banner check needs no send", edit(t, "type: http\n      path: /", "type: send_expect\n      expect_body: ^220"),
			nil},
		{"udp check needs send", edit(t, "type: http\n      path: /", "type: udp\n      expect_body: ^OK"),
			[]string{"FILE:20: clusters[0].health_check.send: udp check needs send or send_hex"}},
		{"send_expect regexp", edit(t, "type: http\n      path: /", "type: send_expect\n      send: PING\n      expect_body: \"(\""), []string{
			"FILE:23: clusters[0].health_check.expect_body: must be a valid regexp: error parsing regexp: missing closing ): `(`",
		}},
		{"send and send_hex", edit(t, "type: http\n      path: /", "type: udp\n      send: PING\n      send_hex: 0d0a"),
			[]string{"FILE:23: clusters[0].health_check.send_hex: set either send or send_hex, not both"}},
		{"udp needs send", edit(t, "type: http\n      path: /", "type: udp\n      expect_body: x"),
			[]string{"FILE:20: clusters[0].health_check.send: udp check needs send or send_hex"}},
		{"send_hex not hex", edit(t, "type: http\n      path: /", "type: udp\n      send_hex: 0z"),
			[]string{`FILE:22: clusters[0].health_check.send_hex: must be hex bytes, like 0d0a (got "0z")`}},
		{"dns query", edit(t, "type: http\n      path: /", "type: dns\n      interval: 2s"),
			[]string{"FILE:20: clusters[0].health_check.query: dns check needs a query: the name to ask for"}},
		{"radius secret", edit(t, "type: http\n      path: /", "type: radius\n      interval: 2s"),
			[]string{"FILE:20: clusters[0].health_check.secret: radius check needs the shared secret"}},
		{"exec command", edit(t, "type: http\n      path: /", "type: exec\n      interval: 2s"),
			[]string{"FILE:20: clusters[0].health_check.command: exec check needs a command"}},
		{"interval zero", edit(t, "path: /", "path: /\n      interval: 0s"),
			[]string{"FILE:23: clusters[0].health_check.interval: must be > 0 (got 0s)"}},
		{"timeout above interval", edit(t, "path: /", "path: /\n      interval: 1s\n      timeout: 2s"),
			[]string{"FILE:24: clusters[0].health_check.timeout: must not exceed interval 1s (got 2s)"}},
		{"rise and fall", edit(t, "path: /", "path: /\n      rise: 0\n      fall: 0"), []string{
			"FILE:23: clusters[0].health_check.rise: must be at least 1 (got 0)",
			"FILE:24: clusters[0].health_check.fall: must be at least 1 (got 0)",
		}},
		// servers
		{"servers missing", edit(t, "    servers:\n      - name: web1\n        address: 198.18.0.21:80\n"+web2, ""),
			[]string{"FILE:17: clusters[0].servers: required: at least one server"}},
		{"server name duplicate", edit(t, "name: web2", "name: web1"),
			[]string{`FILE:29: clusters[0].servers[1].name: duplicate of clusters[0].servers[0].name "web1"`}},
		{"server address hostname", edit(t, "address: 198.18.0.22:80", "address: web2:80"),
			[]string{`FILE:30: clusters[0].servers[1].address: must be IP:port, like 198.18.0.11:7946 (got "web2:80")`}},
		{"server address missing", edit(t, "        address: 198.18.0.22:80\n", ""),
			[]string{"FILE:29: clusters[0].servers[1].address: required: the server's IP:port"}},
		{"server weight", edit(t, "weight: 5", "weight: 257"),
			[]string{"FILE:31: clusters[0].servers[1].weight: must be 1..256 (got 257)"}},
		// everything at once
		{"every problem reported, by line", edit(t,
			"  name: lb1\n", "",
			"priority: 150", "priority: 300",
			"port: 80", "port: 0",
			"address: 198.18.0.22:80", "address: nowhere",
			"  secret: "+testKey, "  insecure: false",
		), []string{
			"FILE:1: node.name: required: this node's name, unique in the pair",
			"FILE:4: cluster.secret: no cluster key: set cluster.secret or cluster.secret_file, or cluster.insecure: true",
			"FILE:10: failover.priority: must be 1..254 (got 300)",
			"FILE:18: clusters[0].port: must be 1..65535 (got 0)",
			`FILE:29: clusters[0].servers[1].address: must be IP:port, like 198.18.0.11:7946 (got "nowhere")`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertProblems(t, problems(t, tt.src), tt.want)
		})
	}
}

func TestValidateFiles(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(keyFile, []byte("\n  "+testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	shortKey := filepath.Join(dir, "short.key")
	if err := os.WriteFile(shortKey, []byte("c2hvcnQ=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notify := filepath.Join(dir, "notify")
	if err := os.WriteFile(notify, []byte("#!/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"secret_file with whitespace", edit(t, "secret: "+testKey, "secret_file: "+keyFile), nil},
		{"secret_file short key", edit(t, "secret: "+testKey, "secret_file: "+shortKey),
			[]string{"FILE:8: cluster.secret_file: DIR/short.key: must be base64 of a 16, 24 or 32-byte key (`tandem keygen` makes one): got 5 bytes"}},
		{"insecure needs no key", edit(t, "secret: "+testKey, "insecure: true"), nil},
		{"notify not executable", edit(t, "  priority: 150", "  notify: "+notify),
			[]string{"FILE:11: failover.notify: DIR/notify is not executable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(t, tt.src)
			for i := range got {
				got[i] = strings.ReplaceAll(got[i], dir, "DIR")
			}
			assertProblems(t, got, tt.want)
		})
	}
	if err := os.Chmod(notify, 0o700); err != nil {
		t.Fatal(err)
	}
	if got := problems(t, edit(t, "  priority: 150", "  notify: "+notify)); got != nil {
		t.Errorf("executable notify: %v", got)
	}
}

// TestValidateInCode covers a Config built without a file: problems carry
// no file or line, and ApplyDefaults fills in the cluster defaults.
func TestValidateInCode(t *testing.T) {
	c := Default()
	c.Cluster = Cluster{Bind: "198.18.0.11:7946", Peers: []string{"198.18.0.12:7946"}, Insecure: true, Label: "tandem"}
	c.Failover.Interface = "eth0"
	c.Failover.VIPs = []string{"198.18.0.100/24"}
	c.Clusters = []VirtualCluster{{Name: "web", VIP: "198.18.0.100", Port: 80,
		Servers: []Server{{Name: "web1", Address: "198.18.0.21:80"}}}}
	c.ApplyDefaults()
	err := c.Validate()
	if got, want := errString(err), "node.name: required: this node's name, unique in the pair"; got != want {
		t.Errorf("Validate = %q, want %q", got, want)
	}
	c.Node.Name = "lb1"
	if err := c.Validate(); err != nil {
		t.Errorf("Validate = %v", err)
	}
	if key, err := c.ClusterKey(); key != nil || err != nil {
		t.Errorf("ClusterKey insecure = %v, %v; want nil, nil", key, err)
	}
	if c.Clusters[0].Servers[0].Weight != 1 || c.Failover.TrackInterfaces[0] != "eth0" {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "lb.yaml", Line: 3, Key: "node.name", Msg: "required"}, "lb.yaml:3: node.name: required"},
		{Problem{File: "lb.yaml", Key: "node.name", Msg: "required"}, "lb.yaml: node.name: required"},
		{Problem{Key: "node.name", Msg: "required"}, "node.name: required"},
		{Problem{File: "lb.yaml", Line: 2, Msg: "invalid YAML: x"}, "lb.yaml:2: invalid YAML: x"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
	errs := Errors{{File: "f", Line: 9, Key: "b", Msg: "m"}, {File: "f", Line: 2, Key: "a", Msg: "m"}}
	if got, want := errs.Error(), "f:2: a: m\nf:9: b: m"; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
}
