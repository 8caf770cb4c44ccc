package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

// upPair starts lb1 (priority 150) and lb2 (100) with responders and
// waits until lb1 is master, holds the VIP and serves the client.
func upPair(t *testing.T, o nodeOpts) *lab {
	l := newLab(t)
	l.respond("lb1")
	l.respond("lb2")
	// lb1 first, so that with preempt: false it is the master whatever
	// the machine's load does to the two start-ups.
	l.start("lb1", o)
	l.waitFor("lb1 MASTER", 10*time.Second, func() bool { return l.state("lb1") == "MASTER" })
	l.start("lb2", o)
	l.waitFor("lb1 MASTER and lb2 BACKUP", 10*time.Second, func() bool {
		return l.state("lb1") == "MASTER" && l.state("lb2") == "BACKUP" && l.holdsVIP("lb1") && !l.holdsVIP("lb2")
	})
	l.onlyServedBy("lb1")
	return l
}

func TestCablePullFailsOverAndPreemptTakesBack(t *testing.T) {
	l := upPair(t, nodeOpts{preempt: true})
	p := l.probe()

	if err := l.script("pull", "lb1"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb2 MASTER holding the VIP, lb1 FAULT without it", 5*time.Second, func() bool {
		return l.state("lb2") == "MASTER" && l.holdsVIP("lb2") && l.state("lb1") == "FAULT" && !l.holdsVIP("lb1")
	})
	l.onlyServedBy("lb2")
	st, err := l.status("lb2")
	if err != nil {
		t.Fatal(err)
	}
	last := st.Transitions[len(st.Transitions)-1]
	if last.To != "MASTER" || !strings.Contains(last.Reason, "peer lb1 silent for") {
		t.Errorf("lb2's take-over reason = %q, want \"peer lb1 silent for ...\"", last.Reason)
	}
	// lb2 sees lb1 as unreachable, never as MASTER.
	if len(st.Peers) != 1 || st.Peers[0].Alive || st.Peers[0].State == "MASTER" {
		t.Errorf("lb2's view of the silent lb1 = %+v", st.Peers)
	}

	plugged := time.Now()
	if err := l.script("plug", "lb1"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb1 to preempt", 5*time.Second, func() bool {
		return l.state("lb1") == "MASTER" && l.state("lb2") == "BACKUP" && l.holdsVIP("lb1") && !l.holdsVIP("lb2")
	})
	l.neverBoth(time.Second)
	l.onlyServedBy("lb1")

	s := p.stop(t)
	if len(s.Outages) == 0 {
		t.Fatalf("the client saw no outage across a cable pull: %+v", s)
	}
	pull := s.Outages[0]
	t.Logf("cable pull: client outage %.1f ms (%d failed probes)", pull.MS, pull.Failed)
	failedAfterPlug := 0
	for _, o := range s.Outages[1:] {
		if o.Start.After(plugged) {
			failedAfterPlug += o.Failed
		}
	}
	t.Logf("plug back (preempt): %d failed probes", failedAfterPlug)
	if s.Servers["lb1"] == 0 || s.Servers["lb2"] == 0 {
		t.Errorf("the client was not served by both boxes in turn: %v", s.Servers)
	}
}

func TestNoPreemptKeepsTheNewMaster(t *testing.T) {
	l := upPair(t, nodeOpts{preempt: false})
	if err := l.script("pull", "lb1"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb2 MASTER", 5*time.Second, func() bool { return l.state("lb2") == "MASTER" && l.holdsVIP("lb2") })
	if err := l.script("plug", "lb1"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb1 BACKUP again", 5*time.Second, func() bool { return l.state("lb1") == "BACKUP" })
	// Give a preempt every chance to (wrongly) happen.
	l.neverBoth(1500 * time.Millisecond)
	if l.state("lb1") != "BACKUP" || l.holdsVIP("lb1") || l.state("lb2") != "MASTER" || !l.holdsVIP("lb2") {
		t.Fatalf("with preempt: false, lb1 %s (holds %v) and lb2 %s (holds %v); want lb2 to keep the VIP",
			l.state("lb1"), l.holdsVIP("lb1"), l.state("lb2"), l.holdsVIP("lb2"))
	}
	l.onlyServedBy("lb2")
}

func TestKill9FailsOverAndRestartCleansUp(t *testing.T) {
	l := upPair(t, nodeOpts{preempt: true})
	p1 := l.nodes["lb1"]
	if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p1.done
	l.waitFor("lb2 MASTER after kill -9 of lb1", 5*time.Second, func() bool {
		return l.state("lb2") == "MASTER" && l.holdsVIP("lb2")
	})
	l.onlyServedBy("lb2")
	// A killed process cannot remove its VIP; `tandem release` (the
	// systemd unit's ExecStopPost) does, and refuses while a node runs.
	if !l.holdsVIP("lb1") {
		t.Fatal("lb1's VIP is gone after kill -9: nothing left to test")
	}
	release := func(box string) (string, int) {
		cmd := exec.Command("ip", "netns", "exec", l.ns(box), binDir+"/tandem", "release", "--config", filepath.Join(l.dir, box+".yaml"))
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	if out, code := release("lb2"); code != 1 || !strings.Contains(out, "is running") {
		t.Errorf("release on the running lb2: exit %d, %s", code, out)
	}
	if !l.holdsVIP("lb2") {
		t.Fatal("a refused release removed lb2's VIP")
	}
	if out, code := release("lb1"); code != 0 || l.holdsVIP("lb1") {
		t.Fatalf("release after kill -9: exit %d, lb1 holds the VIP %v: %s", code, l.holdsVIP("lb1"), out)
	}
	// Leave one behind again, as a crash without the unit would (the
	// VIP on the interface, and in the node's state file): the restarted
	// node must remove the leftover before it joins, then take the VIPs
	// back. (A VIP on the interface that the state file does not name is
	// not a leftover but someone else's address: TestOwnAddressAsVIPRefused.)
	if out, err := exec.Command("ip", "-n", l.ns("lb1"), "addr", "add", vip+"/24", "dev", "eth0").CombinedOutput(); err != nil {
		t.Fatalf("re-add the leftover: %v %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(l.dir, "lb1.eth0.vips"), []byte(`{"interface":"eth0","vips":["`+vip+`/24"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	l.start("lb1", nodeOpts{preempt: true})
	l.waitFor("restarted lb1 MASTER and lb2 BACKUP", 10*time.Second, func() bool {
		return l.state("lb1") == "MASTER" && l.state("lb2") == "BACKUP" && l.holdsVIP("lb1") && !l.holdsVIP("lb2")
	})
	l.onlyServedBy("lb1")
	b, err := os.ReadFile(l.nodes["lb1"].log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "VIP left over") {
		t.Errorf("restarted lb1 did not report removing the leftover VIP; log:\n%s", tail(string(b), 30))
	}
}

func TestSigtermHandsOverWithoutFailedProbes(t *testing.T) {
	l := upPair(t, nodeOpts{preempt: true})
	p := l.probe()
	time.Sleep(300 * time.Millisecond)
	p1 := l.nodes["lb1"]
	if err := p1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p1.done:
		if err != nil {
			t.Fatalf("lb1 exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("lb1 did not exit after SIGTERM")
	}
	if l.holdsVIP("lb1") {
		t.Fatal("lb1 left its VIP behind after SIGTERM")
	}
	l.waitFor("lb2 MASTER", 2*time.Second, func() bool { return l.state("lb2") == "MASTER" && l.holdsVIP("lb2") })
	st, err := l.status("lb2")
	if err != nil {
		t.Fatal(err)
	}
	if r := st.Transitions[len(st.Transitions)-1].Reason; !strings.Contains(r, "peer lb1 left") {
		t.Errorf("lb2's take-over reason = %q, want \"peer lb1 left\"", r)
	}
	l.onlyServedBy("lb2")
	s := p.stop(t)
	t.Logf("SIGTERM hand-over: %d failed probes of %d", s.Failed, s.Probes)
	if s.Failed != 0 {
		t.Errorf("the client saw %d failed probes across a graceful stop, want 0: %+v", s.Failed, s.Outages)
	}
}

func TestSwitchoverHandsOverWithoutFailedProbes(t *testing.T) {
	l := upPair(t, nodeOpts{preempt: true})
	// Refused on the backup: exit 1 and a reason.
	out, err := exec.Command(binDir+"/tandem", "switchover", "--socket", l.dir+"/lb2.sock").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not MASTER") {
		t.Fatalf("switchover on the backup: %v\n%s", err, out)
	}
	p := l.probe()
	time.Sleep(300 * time.Millisecond)
	out, err = exec.Command(binDir+"/tandem", "switchover", "--socket", l.dir+"/lb1.sock").CombinedOutput()
	if err != nil {
		t.Fatalf("switchover: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	l.waitFor("lb2 MASTER, lb1 BACKUP", 2*time.Second, func() bool {
		return l.state("lb2") == "MASTER" && l.state("lb1") == "BACKUP" && l.holdsVIP("lb2") && !l.holdsVIP("lb1")
	})
	// lb1 has the higher priority and preempt on, yet stays backup.
	l.neverBoth(time.Second)
	if l.state("lb1") != "BACKUP" || !l.holdsVIP("lb2") {
		t.Fatalf("after the switchover lb1 is %s and lb2 holds=%v: lb1 preempted back", l.state("lb1"), l.holdsVIP("lb2"))
	}
	l.onlyServedBy("lb2")
	ev, err := exec.Command(binDir+"/tandem", "events", "--json", "--socket", l.dir+"/lb1.sock", "--socket", l.dir+"/lb2.sock").Output()
	if err != nil {
		t.Fatalf("events: %v\n%s", err, ev)
	}
	var events []api.Event
	if err := json.Unmarshal(ev, &events); err != nil {
		t.Fatalf("events JSON: %v", err)
	}
	for _, want := range []api.Event{
		{Node: "lb1", Kind: "switchover", Message: "requested by the operator"},
		{Node: "lb2", Kind: "transition", Message: "BACKUP -> MASTER: peer lb1 left"},
		{Node: "lb1", Kind: "vip", Message: "released"},
	} {
		if !slices.ContainsFunc(events, func(e api.Event) bool {
			return e.Node == want.Node && e.Kind == want.Kind && strings.Contains(e.Message, want.Message)
		}) {
			t.Errorf("tandem events lacks %+v:\n%s", want, ev)
		}
	}
	if !slices.IsSortedFunc(events, func(a, b api.Event) int { return a.At.Compare(b.At) }) {
		t.Error("the merged timeline is not in time order")
	}
	s := p.stop(t)
	t.Logf("switchover: %d failed probes of %d", s.Failed, s.Probes)
	if s.Failed != 0 {
		t.Errorf("the client saw %d failed probes across a switchover, want 0: %+v", s.Failed, s.Outages)
	}
}

func TestConfigDriftIsShownAndBlocksPreempt(t *testing.T) {
	l := newLab(t)
	l.respond("lb1")
	l.respond("lb2")
	l.start("lb1", nodeOpts{preempt: true})
	// lb1 master first: with a drifted config neither preempts, so the
	// two start-ups must not race (on a busy machine lb2 may come up first).
	l.waitFor("lb1 MASTER alone", 10*time.Second, func() bool { return l.state("lb1") == "MASTER" })
	l.start("lb2", nodeOpts{preempt: true, extra: "  garp: {count: 2}\n"})
	l.waitFor("lb1 MASTER, lb2 BACKUP, the drift known", 10*time.Second, func() bool {
		st, err := l.status("lb1")
		return err == nil && st.State == "MASTER" && l.state("lb2") == "BACKUP" &&
			len(st.Peers) == 1 && len(st.Peers[0].ConfigDiff) > 0
	})
	st, err := l.status("lb1")
	if err != nil {
		t.Fatal(err)
	}
	if p := st.Peers[0]; p.ConfigMatch || strings.Join(p.ConfigDiff, ",") != "failover" {
		t.Fatalf("lb1's view of lb2: match=%v diff=%v, want a failover mismatch", p.ConfigMatch, p.ConfigDiff)
	}
	out, _ := exec.Command(binDir+"/tandem", "status", "--socket", l.dir+"/lb1.sock").Output()
	if !strings.Contains(string(out), "MISMATCH (failover)") {
		t.Errorf("status does not show the drift:\n%s", out)
	}
	if err := l.script("pull", "lb1"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb2 MASTER", 5*time.Second, func() bool { return l.state("lb2") == "MASTER" })
	if err := l.script("plug", "lb1"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb1 BACKUP", 5*time.Second, func() bool { return l.state("lb1") == "BACKUP" })
	time.Sleep(time.Second)
	st, err = l.status("lb1")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "BACKUP" || len(st.Holds) == 0 || !strings.Contains(st.Holds[0], "config differs") {
		t.Fatalf("lb1 with a drifted config: %s, holds %v; want BACKUP held by the drift", st.State, st.Holds)
	}
}
