package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nginx runs a real nginx in box's namespace answering "NAME\n" on port
// 80, with a config in the test's folder.
func (l *lab) nginx(box string) *proc {
	l.t.Helper()
	if _, err := exec.LookPath("nginx"); err != nil {
		l.t.Skip("needs nginx: run scripts/deps.sh")
	}
	dir := filepath.Join(l.dir, "nginx-"+box)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.t.Fatal(err)
	}
	conf := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen 80 reuseport;
    keepalive_requests 100000;
    location / { default_type text/plain; return 200 "%[2]s\n"; }
  }
}
`, dir, box)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.ns(box), "nginx", "-c", path, "-p", dir)
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("nginx in %s: %v", box, err)
	}
	p := &proc{cmd: cmd, log: filepath.Join(dir, "error.log"), done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	l.nodes["nginx-"+box] = p
	return p
}

// webCluster is the clusters section for a web cluster on the VIP's port
// 80 over the two nginx backends, plus extra clusters.
func webCluster(algorithm, extra string) string {
	return fmt.Sprintf(`clusters:
  - name: web
    vip: %s
    port: 80
    algorithm: %s
    health_check: {type: http, path: /, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}
    servers:
      - {name: be1, address: "198.18.0.21:80"}
      - {name: be2, address: "198.18.0.22:80"}
%s`, vip, algorithm, extra)
}

// curl asks url from the client namespace n times (a new connection
// each) and counts the answers by body; failures count under "FAIL".
func (l *lab) curl(url string, n int) map[string]int {
	l.t.Helper()
	script := fmt.Sprintf(`for i in $(seq 1 %d); do curl -s -m 2 %s || echo FAIL; done`, n, url)
	out, _ := exec.Command("ip", "netns", "exec", l.ns("client"), "sh", "-c", script).Output()
	got := map[string]int{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		got[strings.TrimSpace(line)]++
	}
	return got
}

func upWeb(t *testing.T, algorithm, extra string) *lab {
	l := newLab(t)
	l.nginx("be1")
	l.nginx("be2")
	o := nodeOpts{preempt: true, extra: webCluster(algorithm, extra)}
	l.start("lb1", o)
	l.start("lb2", o)
	l.waitFor("lb1 MASTER with healthy servers", 10*time.Second, func() bool {
		st, err := l.status("lb1")
		// lb2 too may have been master at start: it keeps the VIP for the
		// make-before-break overlap, and serves what reaches it meanwhile.
		if err != nil || st.State != "MASTER" || len(st.Clusters) == 0 || !l.holdsVIP("lb1") || l.holdsVIP("lb2") {
			return false
		}
		for _, s := range st.Clusters[0].Servers {
			if !s.Healthy {
				return false
			}
		}
		return true
	})
	return l
}

func TestWebRoundRobinThroughTheVIP(t *testing.T) {
	l := upWeb(t, "round_robin", "")
	got := l.curl("http://"+vip+"/", 20)
	if got["be1"] != 10 || got["be2"] != 10 {
		t.Fatalf("round robin over 20 requests: %v, want 10 each", got)
	}
	// wrk, new connection per request, 2 s: no error, both servers used.
	if _, err := exec.LookPath("wrk"); err == nil {
		out, err := exec.Command("ip", "netns", "exec", l.ns("client"), "wrk", "-t1", "-c10", "-d2s",
			"-H", "Connection: close", "http://"+vip+"/").CombinedOutput()
		if err != nil {
			t.Fatalf("wrk: %v\n%s", err, out)
		}
		t.Logf("wrk through the VIP:\n%s", out)
		if strings.Contains(string(out), "Socket errors") || strings.Contains(string(out), "Non-2xx") {
			t.Errorf("wrk saw errors through the VIP:\n%s", out)
		}
		st, _ := l.status("lb1")
		for _, s := range st.Clusters[0].Servers {
			if s.TotalConns < 100 {
				t.Errorf("server %s got %d connections under wrk, want a fair share", s.Name, s.TotalConns)
			}
		}
	}
	// The standby refuses connections cleanly, and counts them.
	st, _ := l.status("lb2")
	if st.Clusters[0].Serving {
		t.Error("the BACKUP reports serving")
	}
	st, _ = l.status("lb1")
	if st.Clusters[0].TotalConns < 20 {
		t.Errorf("lb1 counted %d connections, want ≥ 20", st.Clusters[0].TotalConns)
	}
}

// TestEveryAlgorithmThroughTheVIP runs one cluster per algorithm on its
// own port of the VIP and checks the spread a user expects of each.
func TestEveryAlgorithmThroughTheVIP(t *testing.T) {
	algos := []struct {
		name  string
		port  int
		w1    int // be1's weight; be2's is 1
		check func(got map[string]int) bool
		want  string
	}{
		{"weighted_round_robin", 81, 3, func(g map[string]int) bool { return g["be1"] == 30 && g["be2"] == 10 }, "30/10 for weights 3:1"},
		{"least_conn", 82, 1, func(g map[string]int) bool { return g["be1"] >= 15 && g["be2"] >= 15 }, "idle equal servers share"},
		{"random_two", 83, 1, func(g map[string]int) bool { return g["be1"] > 0 && g["be2"] > 0 && g["FAIL"] == 0 }, "both used"},
		{"fastest_response", 84, 1, func(g map[string]int) bool { return g["be1"] > 0 && g["be2"] > 0 && g["FAIL"] == 0 }, "both measured, no failure"},
		{"source_hash", 85, 1, func(g map[string]int) bool { return len(g) == 1 && g["FAIL"] == 0 }, "one client, one server"},
	}
	var extra strings.Builder
	for _, a := range algos {
		fmt.Fprintf(&extra, `  - name: %s
    vip: %s
    port: %d
    algorithm: %s
    servers:
      - {name: be1, address: "198.18.0.21:80", weight: %d}
      - {name: be2, address: "198.18.0.22:80", weight: 1}
`, strings.ReplaceAll(a.name, "_", "-"), vip, a.port, a.name, a.w1)
	}
	l := upWeb(t, "round_robin", extra.String())
	for _, a := range algos {
		got := l.curl(fmt.Sprintf("http://%s:%d/", vip, a.port), 40)
		t.Logf("%s: %v", a.name, got)
		if !a.check(got) {
			t.Errorf("%s over 40 requests: %v, want %s", a.name, got, a.want)
		}
	}
}

func TestDrainDisableEnableAndDeadBackend(t *testing.T) {
	l := upWeb(t, "round_robin", "")
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(binDir+"/tandem", append(append([]string{"server"}, args...),
			"--socket", filepath.Join(l.dir, "lb1.sock"), "--socket", filepath.Join(l.dir, "lb2.sock"))...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tandem server %v: %v\n%s", args, err, out)
		}
	}
	run("disable", "web", "be1")
	if got := l.curl("http://"+vip+"/", 10); got["be2"] != 10 {
		t.Fatalf("be1 disabled: %v, want all on be2", got)
	}
	run("enable", "web", "be1")
	if got := l.curl("http://"+vip+"/", 10); got["be1"] == 0 {
		t.Fatalf("be1 enabled again: %v, want be1 back", got)
	}
	run("drain", "web", "be2")
	if got := l.curl("http://"+vip+"/", 10); got["be1"] != 10 {
		t.Fatalf("be2 draining: %v, want all on be1", got)
	}
	if err := exec.Command(binDir+"/tandem", "server", "drain", "web", "nope", "--socket",
		filepath.Join(l.dir, "lb1.sock")).Run(); err == nil {
		t.Error("an unknown server name was accepted")
	}
	run("enable", "web", "be2")

	// Stop be1 under load: new connections that meet it dead are retried
	// on be2, and the health check takes it out; only a request in flight
	// on be1 at that instant may fail.
	load := exec.Command("ip", "netns", "exec", l.ns("client"), "sh", "-c",
		`for i in $(seq 1 100); do curl -s -m 2 http://`+vip+`/ || echo FAIL; done`)
	var loadOut strings.Builder
	load.Stdout = &loadOut
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	ng := l.nodes["nginx-be1"]
	_ = ng.cmd.Process.Signal(syscall.SIGTERM)
	<-ng.done
	_ = load.Wait()
	answers := map[string]int{}
	for _, line := range strings.Fields(loadOut.String()) {
		answers[line]++
	}
	t.Logf("100 requests while be1 was stopped: %v", answers)
	if answers["FAIL"] > 1 || answers["be1"]+answers["be2"]+answers["FAIL"] != 100 {
		t.Errorf("stopping be1 under load: %v, want at most the one request in flight to fail", answers)
	}
	if got := l.curl("http://"+vip+"/", 20); got["be2"] != 20 {
		t.Fatalf("be1 stopped: %v, want every request answered by be2", got)
	}
	l.waitFor("be1 marked down", 5*time.Second, func() bool {
		st, err := l.status("lb1")
		return err == nil && !st.Clusters[0].Servers[0].Healthy
	})
	// Both boxes run the checks: the standby knows too.
	l.waitFor("lb2 to see be1 down", 5*time.Second, func() bool {
		st, err := l.status("lb2")
		return err == nil && !st.Clusters[0].Servers[0].Healthy
	})
}

func TestAllowListRefusesOutsiders(t *testing.T) {
	extra := fmt.Sprintf(`  - name: private
    vip: %s
    port: 81
    allow: [198.18.0.200/32]
    servers:
      - {name: be1, address: "198.18.0.21:80"}
`, vip)
	l := upWeb(t, "round_robin", extra)
	if got := l.curl("http://"+vip+":81/", 3); got["FAIL"] != 3 {
		t.Fatalf("client outside allow: %v, want 3 refusals", got)
	}
	if got := l.curl("http://"+vip+"/", 2); got["FAIL"] != 0 {
		t.Fatalf("the open cluster failed: %v", got)
	}
	st, _ := l.status("lb1")
	if st.Clusters[1].Refused["allow"] < 3 {
		t.Errorf("refused(allow) = %d, want ≥ 3", st.Clusters[1].Refused["allow"])
	}
}

func TestCablePullUnderLoadCarriesOn(t *testing.T) {
	l := upWeb(t, "round_robin", "")
	// A client loop of new connections, bounded in count and time.
	script := `ok=0; fail=0; end=$(( $(date +%s) + 8 )); i=0
while [ $(date +%s) -lt $end ] && [ $i -lt 20000 ]; do
  i=$((i+1))
  if curl -s -m 1 -o /dev/null http://` + vip + `/; then ok=$((ok+1)); else fail=$((fail+1)); fi
done; echo "$ok $fail"`
	cmd := exec.Command("ip", "netns", "exec", l.ns("client"), "sh", "-c", script)
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := l.script("pull", "lb1"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb2 MASTER", 5*time.Second, func() bool { return l.state("lb2") == "MASTER" })
	before, _ := l.status("lb2")
	time.Sleep(2 * time.Second)
	after, _ := l.status("lb2")
	_ = cmd.Wait()
	f := strings.Fields(out.String())
	if len(f) != 2 {
		t.Fatalf("load loop output %q", out.String())
	}
	ok, _ := strconv.Atoi(f[0])
	failed, _ := strconv.Atoi(f[1])
	t.Logf("through a cable pull: %d requests answered, %d failed", ok, failed)
	if after.Clusters[0].TotalConns <= before.Clusters[0].TotalConns {
		t.Fatalf("lb2 served nothing after taking over (%d → %d connections)",
			before.Clusters[0].TotalConns, after.Clusters[0].TotalConns)
	}
	if failed > 5 {
		t.Errorf("%d requests failed across the cable pull; want only those in flight", failed)
	}
}
