package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

// runIn runs the tandem binary in box's namespace and returns its output
// and exit code; it is killed after timeout.
func (l *lab) runIn(box string, timeout time.Duration, args ...string) (string, int) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.ns(box), binDir + "/tandem"}, args...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	l.t.Fatalf("tandem %v: %v\n%s", args, err, out)
	return "", -1
}

// kill9 kills box's node without letting it release anything.
func (l *lab) kill9(box string) {
	l.t.Helper()
	p := l.nodes[box]
	if err := p.cmd.Process.Kill(); err != nil {
		l.t.Fatal(err)
	}
	<-p.done
}

// editConfig rewrites box's config file: old replaced by new.
func (l *lab) editConfig(box, old, new string) string {
	l.t.Helper()
	path := l.dir + "/" + box + ".yaml"
	b, err := os.ReadFile(path)
	if err != nil {
		l.t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		l.t.Fatalf("%s has no %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		l.t.Fatal(err)
	}
	return path
}

// TestStrangerAnnouncementsDoNotHoldTheBackup: a box on the LAN that is
// not the peer (here the client, with a spoofed low MAC) keeps
// announcing the VIP when the master dies. Only the peer's own address
// may hold the backup back: it takes over at once, and reports the
// conflict.
func TestStrangerAnnouncementsDoNotHoldTheBackup(t *testing.T) {
	l := upPair(t, nodeOpts{preempt: true})
	spoof := exec.Command("ip", "netns", "exec", l.ns("client"), binDir+"/labtools", "garp",
		"-ip", vip, "-mac", "02:00:00:00:00:01", "-count", "100", "-interval", "100ms")
	if err := spoof.Start(); err != nil {
		t.Fatal(err)
	}
	spoofDone := make(chan error, 1)
	go func() { spoofDone <- spoof.Wait() }()
	t.Cleanup(func() {
		_ = spoof.Process.Kill()
		<-spoofDone
	})
	time.Sleep(300 * time.Millisecond) // a few spoofed announcements while the master lives
	killed := time.Now()
	l.kill9("lb1")
	l.waitFor("lb2 MASTER despite the spoofer", 2*time.Second, func() bool {
		return l.state("lb2") == "MASTER" && l.holdsVIP("lb2")
	})
	t.Logf("lb2 took over %v after lb1 died, the spoofer announcing all along", time.Since(killed).Round(time.Millisecond))
	st, err := l.status("lb2")
	if err != nil {
		t.Fatal(err)
	}
	sb := st.SplitBrain
	if sb.AddressConflicts == 0 || sb.LastConflict == nil || sb.LastConflict.MAC != "02:00:00:00:00:01" {
		t.Fatalf("conflicts not reported: %+v", sb)
	}
}

// TestSecondRunLeavesTheLiveNodesVIPs: `tandem run` started again with
// the running node's config exits without touching its VIPs.
func TestSecondRunLeavesTheLiveNodesVIPs(t *testing.T) {
	l := newLab(t)
	l.start("lb1", nodeOpts{})
	l.waitFor("lb1 MASTER", 10*time.Second, func() bool { return l.state("lb1") == "MASTER" && l.holdsVIP("lb1") })
	done := make(chan struct{})
	lost := 0
	go func() {
		defer close(done)
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if !l.holdsVIP("lb1") {
				lost++
			}
		}
	}()
	out, code := l.runIn("lb1", 10*time.Second, "run", "--config", l.dir+"/lb1.yaml")
	<-done
	if code != 1 || !strings.Contains(out, "another tandem is running") {
		t.Fatalf("second run: exit %d\n%s", code, out)
	}
	if lost > 0 {
		t.Fatalf("the VIP was missing from the live node in %d samples", lost)
	}
}

// TestReleaseFromTheStateFile: a node killed with its VIP held, whose
// config was meanwhile broken and no longer names that VIP: release
// still removes it, from the node's state file.
func TestReleaseFromTheStateFile(t *testing.T) {
	l := newLab(t)
	l.start("lb1", nodeOpts{})
	l.waitFor("lb1 MASTER", 10*time.Second, func() bool { return l.state("lb1") == "MASTER" && l.holdsVIP("lb1") })
	l.kill9("lb1")
	if !l.holdsVIP("lb1") {
		t.Fatal("the VIP went with the killed node: nothing to test")
	}
	cfg := l.editConfig("lb1", "  vips: ["+vip+"/24]", "  vips: [198.18.0.101/24]\n  notify: /nonexistent/notify.sh")
	if out, code := l.runIn("lb1", 10*time.Second, "validate", "--config", cfg); code != 2 {
		t.Fatalf("the broken config validates (%d): %s", code, out)
	}
	out, code := l.runIn("lb1", 10*time.Second, "release", "--config", cfg)
	if code != 0 || l.holdsVIP("lb1") {
		t.Fatalf("release: exit %d, VIP still held %v\n%s", code, l.holdsVIP("lb1"), out)
	}
	t.Logf("release: %s", strings.TrimSpace(out))
}

// TestOwnAddressAsVIPRefused: a VIP the interface already has, that no
// node put there (the box's own address), makes validate and run refuse,
// and the address stays.
func TestOwnAddressAsVIPRefused(t *testing.T) {
	l := newLab(t)
	const own = "198.18.0.150/24"
	if out, err := exec.Command("ip", "-n", l.ns("lb1"), "addr", "add", own, "dev", "eth0").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add: %v\n%s", err, out)
	}
	l.config("lb1", nodeOpts{})
	cfg := l.editConfig("lb1", "  vips: ["+vip+"/24]", "  vips: ["+vip+"/24, "+own+"]")
	out, code := l.runIn("lb1", 10*time.Second, "validate", "--config", cfg)
	if code != 2 || !strings.Contains(out, "already on eth0") {
		t.Fatalf("validate: exit %d\n%s", code, out)
	}
	out, code = l.runIn("lb1", 20*time.Second, "run", "--config", cfg)
	if code != 1 || !strings.Contains(out, "did not put it there") {
		t.Fatalf("run: exit %d\n%s", code, tail(out, 20))
	}
	b, err := exec.Command("ip", "-n", l.ns("lb1"), "-br", "addr", "show", "dev", "eth0").Output()
	if err != nil || !strings.Contains(string(b), own) {
		t.Fatalf("the box's own address is gone: %s %v", b, err)
	}
}

// unitCaps are the packaged unit's capabilities (configs/tandem.service).
const unitCaps = "+net_admin,+net_raw,+net_bind_service,+sys_nice"

// TestNodeRunsUnprivileged runs a node the way the packaged unit does: an
// unprivileged user (nobody here) with only the unit's capabilities. It
// becomes master, holds and serves the VIP, stops cleanly releasing it,
// and a release after a kill -9 works with the same rights.
func TestNodeRunsUnprivileged(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux)")
	}
	l := newLab(t)
	l.respond("lb1")
	dir, err := os.MkdirTemp("", "tandem-unpriv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	key, err := os.ReadFile(l.key)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(binDir + "/tandem") // binDir is root's alone
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
		data []byte
	}{{dir + "/cluster.key", 0o600, key}, {dir + "/tandem", 0o755, bin}} {
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, dir + "/cluster.key"} {
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	cfg := l.config("lb1", nodeOpts{})
	cfg = l.editConfig("lb1", "api_socket: "+l.dir+"/lb1.sock", "api_socket: "+dir+"/lb1.sock")
	cfg = l.editConfig("lb1", "secret_file: "+l.key, "secret_file: "+dir+"/cluster.key")
	b, _ := os.ReadFile(cfg)
	if err := os.WriteFile(dir+"/lb1.yaml", b, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg = dir + "/lb1.yaml"
	asUnit := func(args ...string) *exec.Cmd {
		return exec.Command("ip", append([]string{"netns", "exec", l.ns("lb1"), "setpriv",
			"--reuid=65534", "--regid=65534", "--clear-groups",
			"--inh-caps=-all," + unitCaps, "--ambient-caps=-all," + unitCaps, "--bounding-set=-all," + unitCaps,
			dir + "/tandem"}, args...)...)
	}
	logf, err := os.Create(dir + "/lb1.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	run := asUnit("run", "--config", cfg)
	run.Stdout, run.Stderr = logf, logf
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: run, log: dir + "/lb1.log", done: make(chan error, 1)}
	go func() { p.done <- run.Wait() }()
	l.nodes["lb1"] = p
	status := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := api.NewClient(dir + "/lb1.sock").Status(ctx)
		if err != nil {
			return "UNREACHABLE"
		}
		return st.State
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(dir + "/lb1.log")
			t.Logf("---- log of the unprivileged lb1 ----\n%s", tail(string(b), 40))
		}
	})
	l.waitFor("unprivileged lb1 MASTER holding the VIP", 10*time.Second, func() bool {
		return status() == "MASTER" && l.holdsVIP("lb1")
	})
	l.onlyServedBy("lb1")
	if log, _ := os.ReadFile(dir + "/lb1.log"); strings.Contains(string(log), "SCHED_RR refused") {
		t.Errorf("real-time scheduling refused with CAP_SYS_NICE:\n%s", tail(string(log), 20))
	}
	l.kill9("lb1")
	if !l.holdsVIP("lb1") {
		t.Fatal("the VIP went with the killed node")
	}
	out, err := asUnit("release", "--config", cfg).CombinedOutput()
	if err != nil || l.holdsVIP("lb1") {
		t.Fatalf("unprivileged release: %v, VIP held %v\n%s", err, l.holdsVIP("lb1"), out)
	}
}
