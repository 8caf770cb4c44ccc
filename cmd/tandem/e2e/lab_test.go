// Package e2e runs whole Tandem pairs in the network-namespace lab of
// scripts/lab.sh: real `tandem run` processes, real netlink and ARP, a
// client in its own namespace. The tests need root and skip otherwise.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

const vip = "198.18.0.100"

var (
	repoRoot string
	binDir   string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	wd, _ := os.Getwd()
	repoRoot = filepath.Clean(filepath.Join(wd, "..", "..", ".."))
	if os.Geteuid() == 0 && !testing.Short() {
		dir, err := os.MkdirTemp("", "tandem-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		for _, pkg := range []string{"./cmd/tandem", "./scripts/labtools", "./scripts/tandem-agent"} {
			cmd := exec.Command("go", "build", "-o", dir+"/", pkg)
			cmd.Dir = repoRoot
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
				return 1
			}
		}
		binDir = dir
	}
	return m.Run()
}

// needRoot skips a test that needs namespaces.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the end-to-end tests build a network-namespace lab (run `make test` as root)")
	}
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (`ip`): run scripts/deps.sh")
	}
}

// lab is one lab of scripts/lab.sh with a prefix of its own.
type lab struct {
	t      *testing.T
	prefix string
	dir    string
	key    string
	nodes  map[string]*proc
}

type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

func newLab(t *testing.T, upArgs ...string) *lab {
	t.Helper()
	needRoot(t)
	l := &lab{t: t, prefix: fmt.Sprintf("e%d", os.Getpid()%100000), dir: t.TempDir(), nodes: map[string]*proc{}}
	t.Cleanup(func() {
		// Kill what we started, by PID, then tear the lab down; runs
		// even when the test failed.
		for _, p := range l.nodes {
			if p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			for name, p := range l.nodes {
				b, _ := os.ReadFile(p.log)
				t.Logf("---- log of %s ----\n%s", name, tail(string(b), 60))
			}
		}
		_ = l.script("down")
	})
	if err := l.script(append([]string{"up"}, upArgs...)...); err != nil {
		t.Fatalf("lab up: %v", err)
	}
	out, err := exec.Command(binDir+"/tandem", "keygen").Output()
	if err != nil {
		t.Fatalf("keygen: %v", err)
	}
	l.key = filepath.Join(l.dir, "cluster.key")
	if err := os.WriteFile(l.key, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (l *lab) script(args ...string) error {
	cmd := exec.Command(filepath.Join(repoRoot, "scripts", "lab.sh"), append([]string{"-p", l.prefix}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab.sh %v: %w\n%s", args, err, out)
	}
	return nil
}

func (l *lab) ns(box string) string { return l.prefix + "-" + box }

type nodeOpts struct {
	preempt bool
	extra   string // more YAML appended to the failover section
	// paths adds the dedicated cable (hb0) as a second heartbeat path.
	paths bool
	// vips replaces the VIP list (YAML flow sequence items), e.g. to add
	// the inside floating address "198.19.1.1/24 dev eth1".
	vips string
	// node is more YAML appended to the node section (two-space indent).
	node string
}

func (l *lab) config(box string, o nodeOpts) string {
	prio, self, peer := 150, "198.18.0.11", "198.18.0.12"
	hbSelf, hbPeer := "198.19.0.11", "198.19.0.12"
	if box == "lb2" {
		prio, self, peer = 100, "198.18.0.12", "198.18.0.11"
		hbSelf, hbPeer = hbPeer, hbSelf
	}
	paths := ""
	if o.paths {
		paths = fmt.Sprintf("  heartbeat_paths: [{bind: \"%s:7946\", peer: \"%s:7946\"}]\n", hbSelf, hbPeer)
	}
	vips := vip + "/24"
	if o.vips != "" {
		vips = o.vips
	}
	y := fmt.Sprintf(`node:
  name: %s
  api_socket: %s/%s.sock
  log_level: info
%scluster:
  bind: %s:7946
  peers: [%s:7946]
  secret_file: %s
%sfailover:
  interface: eth0
  priority: %d
  preempt: %t
  advert_interval: 50ms
  vips: [%s]
%s`, box, l.dir, box, o.node, self, peer, l.key, paths, prio, o.preempt, vips, o.extra)
	path := filepath.Join(l.dir, box+".yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		l.t.Fatal(err)
	}
	return path
}

// start runs `tandem run` in box's namespace.
func (l *lab) start(box string, o nodeOpts) *proc {
	l.t.Helper()
	cfg := l.config(box, o)
	logPath := filepath.Join(l.dir, box+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.ns(box), binDir+"/tandem", "run", "--config", cfg)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("start %s: %v", box, err)
	}
	p := &proc{cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	l.nodes[box] = p
	return p
}

// respond runs the static TCP responder on box's port 8080.
func (l *lab) respond(box string) {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.ns(box), binDir+"/labtools", "respond", "-listen", "0.0.0.0:8080", "-name", box)
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: os.DevNull, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	l.nodes["respond-"+box] = p
}

func (l *lab) status(box string) (*api.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return api.NewClient(filepath.Join(l.dir, box+".sock")).Status(ctx)
}

func (l *lab) state(box string) string {
	st, err := l.status(box)
	if err != nil {
		return "UNREACHABLE"
	}
	return st.State
}

// holdsVIP reads the kernel: is the VIP on box's eth0?
func (l *lab) holdsVIP(box string) bool {
	out, err := exec.Command("ip", "-n", l.ns(box), "-br", "addr", "show", "dev", "eth0").Output()
	if err != nil {
		return false
	}
	return bytes.Contains(out, []byte(vip+"/"))
}

// waitFor polls cond until it holds or the timeout passes.
func (l *lab) waitFor(what string, timeout time.Duration, cond func() bool) {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			l.t.Fatalf("timed out after %v waiting for %s (lb1 %s holds=%v, lb2 %s holds=%v)", timeout, what,
				l.state("lb1"), l.holdsVIP("lb1"), l.state("lb2"), l.holdsVIP("lb2"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// summary is labtools probe's JSON summary.
type summary struct {
	Probes  int            `json:"probes"`
	OK      int            `json:"ok"`
	Failed  int            `json:"failed"`
	Servers map[string]int `json:"servers"`
	Outages []struct {
		Start  time.Time `json:"start"`
		MS     float64   `json:"ms"`
		Failed int       `json:"failed"`
		Open   bool      `json:"open"`
	} `json:"outages"`
}

type prober struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

// probe starts a client probing the VIP every 10 ms (at most 2 minutes).
func (l *lab) probe() *prober {
	l.t.Helper()
	p := &prober{}
	p.cmd = exec.Command("ip", "netns", "exec", l.ns("client"), binDir+"/labtools", "probe", "-q",
		"-target", vip+":8080", "-interval", "10ms", "-timeout", "50ms", "-duration", "2m")
	p.cmd.Stdout = &p.out
	if err := p.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	return p
}

func (p *prober) stop(t *testing.T) summary {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Wait()
	var s summary
	if err := json.Unmarshal(p.out.Bytes(), &s); err != nil {
		t.Fatalf("probe summary: %v\n%s", err, p.out.String())
	}
	return s
}

// servedBy probes the VIP for a moment and returns who answered.
func (l *lab) servedBy() map[string]int {
	out, err := exec.Command("ip", "netns", "exec", l.ns("client"), binDir+"/labtools", "probe", "-q",
		"-target", vip+":8080", "-interval", "10ms", "-timeout", "50ms", "-duration", "200ms").Output()
	if err != nil {
		l.t.Fatalf("probe: %v", err)
	}
	var s summary
	if err := json.Unmarshal(out, &s); err != nil {
		l.t.Fatalf("probe summary: %v\n%s", err, out)
	}
	return s.Servers
}

// onlyServedBy waits until every probe is answered by box.
func (l *lab) onlyServedBy(box string) {
	l.t.Helper()
	var last map[string]int
	l.waitFor("the client to be served by "+box+" only", 10*time.Second, func() bool {
		last = l.servedBy()
		return len(last) == 1 && last[box] > 0
	})
}

// neverBoth samples both boxes for d and fails if both hold the VIP.
func (l *lab) neverBoth(d time.Duration) {
	l.t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if l.holdsVIP("lb1") && l.holdsVIP("lb2") {
			l.t.Fatalf("both boxes hold %s", vip)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
