package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// RADIUS through a UDP VIP: real FreeRADIUS servers (Debian's freeradius,
// 3.x) on be1 and be2, real radclient on the client, the radius health
// check (Status-Server, RFC 5997) and source_ip persistence.

const (
	radiusSecret = "testing123"
	// radiusClients is how many client addresses (198.18.4.1 up) ask in
	// each round: with round_robin and no stickiness they would spread
	// over both servers, so "every client kept its server" means
	// something.
	radiusClients = 16
)

// needRadius skips when FreeRADIUS or radclient is not installed.
func needRadius(t *testing.T) {
	t.Helper()
	needRoot(t)
	for _, c := range []string{"freeradius", "radclient"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("needs %s: install Debian's freeradius and freeradius-utils (apt-get install freeradius freeradius-utils)", c)
		}
	}
}

// radiusConf is a minimal FreeRADIUS 3 configuration: pap and files
// only, one auth listener on every address of the box, clients from the
// lab's subnet, Status-Server answered (security.status_server, where
// FreeRADIUS 3 reads it), running as root with everything in dir.
const radiusConf = `prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {{DIR}}
raddbdir = {{DIR}}
radacctdir = {{DIR}}
name = freeradius
confdir = {{DIR}}
modconfdir = {{DIR}}
run_dir = {{DIR}}
db_dir = {{DIR}}
libdir = /usr/lib/freeradius
pidfile = {{DIR}}/freeradius.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 16384
hostname_lookups = no
log {
	destination = stdout
	auth = yes
}
security {
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = yes
}
thread pool {
	start_servers = 2
	max_servers = 4
	min_spare_servers = 1
	max_spare_servers = 3
	max_requests_per_server = 0
}
modules {
	pap {
		normalise = yes
	}
	files {
		filename = ${confdir}/users
	}
}
$INCLUDE ${confdir}/clients.conf
server default {
	listen {
		type = auth
		ipaddr = *
		port = 1812
	}
	authorize {
		files
		pap
	}
	authenticate {
		Auth-Type PAP {
			pap
		}
	}
	post-auth {
	}
}
`

// radiusServer starts `freeradius -X` in box's namespace with a config of
// its own in the test folder; its one user, alice, gets a Reply-Message
// naming the box. It returns when the server says it is ready.
func (l *lab) radiusServer(box string) *proc {
	l.t.Helper()
	dir := filepath.Join(l.dir, box+"-raddb")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.t.Fatal(err)
	}
	files := map[string]string{
		"radiusd.conf": strings.ReplaceAll(radiusConf, "{{DIR}}", dir),
		"clients.conf": fmt.Sprintf("client lab {\n\tipaddr = 198.18.0.0/24\n\tsecret = %s\n}\n", radiusSecret),
		"users":        fmt.Sprintf("alice Cleartext-Password := \"secret\"\n\tReply-Message := \"%s\"\n", box),
	}
	// the stock dictionary file only $INCLUDEs the shipped dictionaries
	if b, err := os.ReadFile("/etc/freeradius/3.0/dictionary"); err == nil {
		files["dictionary"] = string(b)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o640); err != nil {
			l.t.Fatal(err)
		}
	}
	logPath := filepath.Join(l.dir, box+"-freeradius.log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.ns(box), "freeradius", "-X", "-d", dir)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("freeradius in %s: %v", box, err)
	}
	p := &proc{cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	l.nodes["freeradius-"+box] = p
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), "Ready to process requests") {
			return p
		}
		select {
		case err := <-p.done:
			p.done <- err
			l.t.Fatalf("freeradius in %s exited: %v\n%s", box, err, tail(string(b), 30))
		default:
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("freeradius in %s not ready after 10 s\n%s", box, tail(string(b), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopRadius stops box's FreeRADIUS and waits for it to exit.
func (l *lab) stopRadius(box string) {
	l.t.Helper()
	p := l.nodes["freeradius-"+box]
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	delete(l.nodes, "freeradius-"+box)
}

// radiusClientAddrs gives the client namespace radiusClients addresses
// 198.18.4.N/24 and both balancers an on-link route back to them.
func (l *lab) radiusClientAddrs() []string {
	l.t.Helper()
	var addrs []string
	for i := 1; i <= radiusClients; i++ {
		a := fmt.Sprintf("198.18.4.%d", i)
		if out, err := exec.Command("ip", "-n", l.ns("client"), "addr", "add", a+"/24", "dev", "eth0").CombinedOutput(); err != nil {
			l.t.Fatalf("client address %s: %v\n%s", a, err, out)
		}
		addrs = append(addrs, a)
	}
	for _, box := range []string{"lb1", "lb2"} {
		if out, err := exec.Command("ip", "-n", l.ns(box), "route", "add", "198.18.4.0/24", "dev", "eth0").CombinedOutput(); err != nil {
			l.t.Fatalf("route in %s: %v\n%s", box, err, out)
		}
	}
	return addrs
}

// radiusMu serialises rounds: each one steers the client's source
// address with the route to the VIP.
var radiusMu sync.Mutex

// radiusRound authenticates alice once from each address, in turn, with
// radclient (a new source port each time, so a new flow each time) and
// returns address → the Reply-Message of the Access-Accept, or "FAIL".
// retries is radclient's -r: the number of sends, at least 1.
// radclient has no source-address option: the route to the VIP in the
// client namespace names the source (src) before each request.
func (l *lab) radiusRound(addrs []string, timeout string, retries int) map[string]string {
	l.t.Helper()
	radiusMu.Lock()
	defer radiusMu.Unlock()
	script := fmt.Sprintf(`for a in %s; do
  ip route replace %s/32 dev eth0 src "$a" || { echo "$a FAIL"; continue; }
  out=$(echo "User-Name=alice,User-Password=secret" | radclient -x -t %s -r %d %s:1812 auth %s 2>&1)
  case "$out" in
    *"Received Access-Accept"*) echo "$a $(echo "$out" | sed -n 's/.*Reply-Message = "\(.*\)".*/\1/p' | head -n 1)" ;;
    *) echo "$a FAIL" ;;
  esac
done
ip route del %s/32 dev eth0 2>/dev/null || true`, strings.Join(addrs, " "), vip, timeout, retries, vip, radiusSecret, vip)
	out, err := exec.Command("ip", "netns", "exec", l.ns("client"), "sh", "-c", script).Output()
	if err != nil {
		l.t.Fatalf("radclient round: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2:
			got[f[0]] = f[1]
		case len(f) == 1:
			got[f[0]] = "FAIL" // accepted without a Reply-Message
		}
	}
	for _, a := range addrs {
		if got[a] == "" {
			got[a] = "FAIL"
		}
	}
	return got
}

// perServer counts the answers of a round by server.
func perServer(m map[string]string) map[string]int {
	n := map[string]int{}
	for _, s := range m {
		n[s]++
	}
	return n
}

func sameServers(a, b map[string]string) (same int, diff []string) {
	for addr, s := range a {
		if b[addr] == s {
			same++
		} else {
			diff = append(diff, fmt.Sprintf("%s: %s→%s", addr, s, b[addr]))
		}
	}
	sort.Strings(diff)
	return
}

func (l *lab) radiusHealthy(box string, want map[string]bool) bool {
	st, err := l.status(box)
	if err != nil || len(st.Clusters) == 0 {
		return false
	}
	for _, s := range st.Clusters[0].Servers {
		if w, ok := want[s.Name]; ok && s.Healthy != w {
			return false
		}
	}
	return true
}

func TestRADIUSOverUDPThroughTheVIP(t *testing.T) {
	needRadius(t)
	l := newLab(t)
	addrs := l.radiusClientAddrs()
	l.radiusServer("be1")
	l.radiusServer("be2")
	o := nodeOpts{preempt: true, extra: fmt.Sprintf(`clusters:
  - name: radius
    vip: %s
    port: 1812
    protocol: udp
    algorithm: round_robin
    persistence: {mode: source_ip, mask: 32, timeout: 10m}
    health_check: {type: radius, secret: %s, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}
    servers:
      - {name: be1, address: "198.18.0.21:1812"}
      - {name: be2, address: "198.18.0.22:1812"}
`, vip, radiusSecret)}
	l.start("lb1", o)
	l.start("lb2", o)
	both := map[string]bool{"be1": true, "be2": true}
	l.waitFor("lb1 MASTER, both RADIUS servers healthy on both boxes, in sync", 15*time.Second, func() bool {
		return l.state("lb1") == "MASTER" && l.holdsVIP("lb1") && !l.holdsVIP("lb2") &&
			l.radiusHealthy("lb1", both) && l.radiusHealthy("lb2", both) && l.inSync("lb1") && l.inSync("lb2")
	})
	if st, _ := l.status("lb1"); st != nil {
		for _, s := range st.Clusters[0].Servers {
			t.Logf("lb1 check of %s: %s", s.Name, s.LastCheck)
		}
	}

	// Access-Accept through the VIP, the clients spread over both servers
	// and each keeps its server from one request (one flow) to the next.
	first := l.radiusRound(addrs, "1", 1)
	t.Logf("first round: %v", perServer(first))
	if n := perServer(first); n["FAIL"] != 0 || n["be1"] < 4 || n["be2"] < 4 {
		t.Fatalf("first round through the VIP: %v, want %d Access-Accepts spread over be1 and be2 (%v)", n, radiusClients, first)
	}
	if same, diff := sameServers(first, l.radiusRound(addrs, "1", 1)); same != radiusClients {
		t.Fatalf("second round: %d of %d kept their server: %v", same, radiusClients, diff)
	}
	if st, _ := l.status("lb1"); st == nil || st.Clusters[0].DatagramsIn < 2*radiusClients || st.Clusters[0].DatagramsOut < 2*radiusClients {
		t.Errorf("lb1 status: datagrams in/out below %d: %+v", 2*radiusClients, st)
	}

	// A server stopped under load: a client loop keeps authenticating
	// (radclient retries after 1 s, as a NAS would) while be1 goes away;
	// every request is accepted, by be2 once be1 is down.
	stop := make(chan struct{})
	type loadResult struct {
		rounds int
		fails  []string
	}
	res := make(chan loadResult, 1)
	var rounds atomic.Int64
	loadDone := make(chan struct{})
	endLoad := sync.OnceFunc(func() { close(stop) })
	t.Cleanup(func() { endLoad(); <-loadDone }) // before the lab goes away
	go func() {
		defer close(loadDone)
		var r loadResult
		for {
			select {
			case <-stop:
				res <- r
				return
			default:
			}
			for a, s := range l.radiusRound(addrs, "1", 3) {
				if s == "FAIL" {
					r.fails = append(r.fails, a)
				}
			}
			r.rounds++
			rounds.Add(1)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	l.stopRadius("be1")
	l.waitFor("be1 marked down on both boxes", 5*time.Second, func() bool {
		down := map[string]bool{"be1": false, "be2": true}
		return l.radiusHealthy("lb1", down) && l.radiusHealthy("lb2", down)
	})
	// The load goes on until two whole rounds started after be1 was
	// marked down (a round whose requests met the stop waits for
	// radclient's retries, so rounds are counted, not timed).
	atDown := rounds.Load()
	l.waitFor("two rounds of requests after be1 went down", 15*time.Second, func() bool {
		return rounds.Load() >= atDown+2
	})
	endLoad()
	lr := <-res
	t.Logf("under load while be1 stopped: %d rounds of %d, failed: %v", lr.rounds, radiusClients, lr.fails)
	if len(lr.fails) != 0 {
		t.Fatalf("be1 stopped under load: %d rounds, %d requests failed (%v), want none failed", lr.rounds, len(lr.fails), lr.fails)
	}
	if n := perServer(l.radiusRound(addrs, "1", 1)); n["be2"] != radiusClients {
		t.Fatalf("with be1 stopped: %v, want all %d answered by be2", n, radiusClients)
	}

	// be1 back: whatever each client's server is now, it must survive
	// the cable pull. lb2 copies the sticky table; without the copy its
	// own round_robin would spread the clients over both servers again.
	l.radiusServer("be1")
	l.waitFor("be1 healthy again on both boxes", 5*time.Second, func() bool {
		return l.radiusHealthy("lb1", both) && l.radiusHealthy("lb2", both)
	})
	before := l.radiusRound(addrs, "1", 1)
	if n := perServer(before); n["FAIL"] != 0 {
		t.Fatalf("with be1 back: %v", before)
	}
	t.Logf("before the cable pull: %v", perServer(before))
	l.waitFor("lb2 to hold every client's entry", 5*time.Second, func() bool {
		st, err := l.status("lb2")
		return err == nil && st.Persistence.Entries >= radiusClients
	})
	var lb2In uint64
	if st, err := l.status("lb2"); err == nil {
		lb2In = st.Clusters[0].DatagramsIn
	}

	// The cable pull: one client asks every 200 ms until answered, then
	// every client asks again through lb2 and keeps its server.
	pulled := time.Now()
	if err := l.script("pull", "lb1"); err != nil {
		t.Fatal(err)
	}
	var resumed time.Duration
	for {
		r := l.radiusRound(addrs[:1], "0.2", 1)
		if r[addrs[0]] != "FAIL" {
			resumed = time.Since(pulled)
			if r[addrs[0]] != before[addrs[0]] {
				t.Errorf("first answer after the pull from %s, want %s", r[addrs[0]], before[addrs[0]])
			}
			break
		}
		if time.Since(pulled) > 10*time.Second {
			t.Fatalf("no Access-Accept within 10 s of the cable pull (lb1 %s, lb2 %s)", l.state("lb1"), l.state("lb2"))
		}
	}
	// radclient takes ~0.5 s to start (dictionaries), so this is coarse.
	t.Logf("cable pull → Access-Accept again after %v (radclient retried every ~0.5-0.9 s)", resumed.Round(time.Millisecond))
	l.waitFor("lb2 MASTER", 5*time.Second, func() bool { return l.state("lb2") == "MASTER" && l.holdsVIP("lb2") })
	after := l.radiusRound(addrs, "1", 1)
	if same, diff := sameServers(before, after); same != radiusClients {
		t.Fatalf("after the cable pull: %d of %d kept their server: %v", same, radiusClients, diff)
	}
	if st, err := l.status("lb2"); err != nil || st.Clusters[0].DatagramsIn < lb2In+radiusClients {
		t.Errorf("lb2 did not relay the requests after the pull: %+v, %v", st, err)
	}
}
