package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
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
