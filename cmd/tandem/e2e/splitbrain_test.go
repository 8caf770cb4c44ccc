package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
)

// transitionsOf returns how many transitions box has made so far.
func (l *lab) transitionsOf(box string) uint64 {
	l.t.Helper()
	st, err := l.status(box)
	if err != nil {
		l.t.Fatalf("status %s: %v", box, err)
	}
	return st.TransitionsTotal
}

// dualFor samples both boxes every 5 ms for d and returns how long both
// held the VIP at once (the longest stretch).
func (l *lab) dualFor(d time.Duration) time.Duration {
	var longest time.Duration
	var since time.Time
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		both := l.holdsVIP("lb1") && l.holdsVIP("lb2")
		switch {
		case both && since.IsZero():
			since = time.Now()
		case !both && !since.IsZero():
			longest = max(longest, time.Since(since))
			since = time.Time{}
		}
	}
	if !since.IsZero() {
		longest = max(longest, time.Since(since))
	}
	return longest
}

func (l *lab) logOf(box string) string {
	b, err := os.ReadFile(l.nodes[box].log)
	if err != nil {
		l.t.Fatal(err)
	}
	return string(b)
}

// TestHeartbeatCutOnSharedLANLeavesOneMaster: the heartbeats between the
// boxes are dropped but ARP still crosses the LAN. The master announces
// its VIPs once the peer is silent; the backup sees the announcements and
// holds back instead of claiming, so there never are two masters.
func TestHeartbeatCutOnSharedLANLeavesOneMaster(t *testing.T) {
	l := upPair(t, nodeOpts{preempt: true})
	p := l.probe()
	before1, before2 := l.transitionsOf("lb1"), l.transitionsOf("lb2")
	if err := l.script("partition", "ip"); err != nil {
		t.Fatal(err)
	}
	if d := l.dualFor(3 * time.Second); d > 0 {
		t.Errorf("both boxes held the VIP for %v while the heartbeats were cut", d)
	}
	st, err := l.status("lb2")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "BACKUP" || !strings.Contains(strings.Join(st.Holds, "; "), "announces the VIPs while the peer is silent") {
		t.Errorf("lb2 during the cut: %s, holds %q; want BACKUP held by lb1's announcements", st.State, st.Holds)
	}
	if err := l.script("heal"); err != nil {
		t.Fatal(err)
	}
	l.neverBoth(500 * time.Millisecond)
	if a, b := l.transitionsOf("lb1"), l.transitionsOf("lb2"); a != before1 || b != before2 {
		t.Errorf("transitions during a heartbeat cut: lb1 %d -> %d, lb2 %d -> %d; want none", before1, a, before2, b)
	}
	s := p.stop(t)
	if s.Failed != 0 || s.Servers["lb2"] != 0 {
		t.Errorf("client during the heartbeat cut: %d failed probes, servers %v; want none failed, all by lb1", s.Failed, s.Servers)
	}
}

// TestSplitBrainResolvesWhenTheBoxesHearEachOther: a partition that drops
// everything between the boxes (and no second path) makes two masters;
// once they hear each other again the lower priority steps down within
// about one advert interval and the winner announces again.
func TestSplitBrainResolvesWhenTheBoxesHearEachOther(t *testing.T) {
	l := upPair(t, nodeOpts{preempt: true})
	if err := l.script("partition", "all"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("both masters during the partition", 5*time.Second, func() bool {
		return l.state("lb2") == "MASTER" && l.holdsVIP("lb2") && l.holdsVIP("lb1")
	})
	healed := time.Now()
	if err := l.script("heal"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb2 to step down", 5*time.Second, func() bool { return !l.holdsVIP("lb2") })
	t.Logf("two masters resolved %v after the heal (including the lab's nft and ip commands)", time.Since(healed).Round(time.Millisecond))
	if l.state("lb1") != "MASTER" || !l.holdsVIP("lb1") || l.state("lb2") != "BACKUP" {
		t.Fatalf("after the heal: lb1 %s holds=%v, lb2 %s", l.state("lb1"), l.holdsVIP("lb1"), l.state("lb2"))
	}
	l.onlyServedBy("lb1")
	if log := l.logOf("lb1"); !strings.Contains(log, "lost the tie-break") && !strings.Contains(log, "heard again after") {
		t.Errorf("lb1 did not announce again after winning; log:\n%s", tail(log, 30))
	}
}

// TestSecondPathFailsOverAtOnce: with the dedicated cable as a second
// heartbeat path, a box that loses its service link says so over the
// cable and the peer takes over without waiting for the master-down
// timer; a partition of the LAN path alone moves nothing.
func TestSecondPathFailsOverAtOnce(t *testing.T) {
	l := upPair(t, nodeOpts{preempt: true, paths: true})
	b1, b2 := l.transitionsOf("lb1"), l.transitionsOf("lb2")
	if err := l.script("partition", "all"); err != nil {
		t.Fatal(err)
	}
	l.neverBoth(time.Second)
	if err := l.script("heal"); err != nil {
		t.Fatal(err)
	}
	if err := l.script("hbpull"); err != nil {
		t.Fatal(err)
	}
	l.neverBoth(time.Second)
	if err := l.script("hbplug"); err != nil {
		t.Fatal(err)
	}
	if a, b := l.transitionsOf("lb1"), l.transitionsOf("lb2"); a != b1 || b != b2 {
		t.Fatalf("one path broken: transitions lb1 %d -> %d, lb2 %d -> %d; want none", b1, a, b2, b)
	}
	time.Sleep(200 * time.Millisecond) // hb0's carrier back

	p := l.probe()
	time.Sleep(200 * time.Millisecond)
	if err := l.script("pull", "lb1"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb2 MASTER", 5*time.Second, func() bool { return l.state("lb2") == "MASTER" && l.holdsVIP("lb2") })
	l.onlyServedBy("lb2")
	s := p.stop(t)
	st, err := l.status("lb2")
	if err != nil {
		t.Fatal(err)
	}
	last := st.Transitions[len(st.Transitions)-1]
	if !strings.Contains(last.Reason, "peer lb1 is in FAULT") {
		t.Errorf("lb2 took over because %q; want the FAULT advert over the second path", last.Reason)
	}
	for _, o := range s.Outages {
		t.Logf("cable pull with a second path: client outage %.1f ms (%d failed probes)", o.MS, o.Failed)
	}
	if err := l.script("plug", "lb1"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb1 to preempt after the hold-down", 10*time.Second, func() bool {
		return l.state("lb1") == "MASTER" && l.holdsVIP("lb1") && !l.holdsVIP("lb2")
	})
}

// TestWitnessStopsACutOffBoxFromClaiming: lb2's switch port drops
// everything while its carrier stays up. It hears no master, but its
// witness (the client) does not answer either, so it does not claim.
func TestWitnessStopsACutOffBoxFromClaiming(t *testing.T) {
	l := upPair(t, nodeOpts{preempt: true, extra: "  witness: 198.18.0.2\n"})
	b2 := l.transitionsOf("lb2")
	if err := l.script("isolate", "lb2"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	st, err := l.status("lb2")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "BACKUP" || l.holdsVIP("lb2") || st.TransitionsTotal != b2 {
		t.Errorf("isolated lb2: %s, holds VIP %v, transitions %d -> %d; want BACKUP without the VIP",
			st.State, l.holdsVIP("lb2"), b2, st.TransitionsTotal)
	}
	if !strings.Contains(strings.Join(st.Holds, "; "), "witness 198.18.0.2 does not answer") {
		t.Errorf("isolated lb2's holds %q do not name the witness", st.Holds)
	}
	if err := l.script("heal"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb2's witness hold released", 5*time.Second, func() bool {
		st, err := l.status("lb2")
		return err == nil && len(st.Holds) == 0
	})
	// The witness must not stop a take-over the box is entitled to.
	if err := l.script("pull", "lb1"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb2 MASTER after lb1's cable pull", 5*time.Second, func() bool { return l.state("lb2") == "MASTER" && l.holdsVIP("lb2") })
}

// TestFlappingLinkDoesNotBounceTheVIPs: the master's cable changes state
// 10 times in 5 seconds. The VIPs move to lb2 once and stay there until
// lb1's link has been stable for the hold-down.
func TestFlappingLinkDoesNotBounceTheVIPs(t *testing.T) {
	l := upPair(t, nodeOpts{preempt: true})
	b2 := l.transitionsOf("lb2")
	for i := range 10 {
		cmd := "pull"
		if i%2 == 1 {
			cmd = "plug"
		}
		if err := l.script(cmd, "lb1"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	st, err := l.status("lb2")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.TransitionsTotal - b2; got != 1 || st.State != "MASTER" {
		t.Errorf("lb2 during the flapping: %d transitions, now %s; want exactly one, to MASTER", got, st.State)
	}
	l1, err := l.status("lb1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(l1.Holds, "; "), "link hold-down") {
		t.Errorf("lb1 after the flapping shows no hold-down: %q", l1.Holds)
	}
	l.waitFor("lb1 to preempt once its link was stable", 15*time.Second, func() bool {
		return l.state("lb1") == "MASTER" && l.holdsVIP("lb1") && !l.holdsVIP("lb2")
	})
}

// TestWitnessMakesAnIsolatedMasterHandOver: the master's switch port
// drops everything while its carrier stays up, but the dedicated cable
// still carries adverts. Its witness stops answering, so it hands the
// VIPs to lb2, whose witness answers; once healed it takes them back.
func TestWitnessMakesAnIsolatedMasterHandOver(t *testing.T) {
	l := upPair(t, nodeOpts{preempt: true, paths: true, extra: "  witness: 198.18.0.2\n"})
	p := l.probe()
	if err := l.script("isolate", "lb1"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb2 MASTER, lb1 BACKUP", 5*time.Second, func() bool {
		return l.state("lb2") == "MASTER" && l.holdsVIP("lb2") && l.state("lb1") == "BACKUP" && !l.holdsVIP("lb1")
	})
	l.onlyServedBy("lb2")
	st, err := l.status("lb1")
	if err != nil {
		t.Fatal(err)
	}
	if last := st.Transitions[len(st.Transitions)-1]; !strings.Contains(last.Reason, "witness 198.18.0.2 does not answer") {
		t.Errorf("lb1 stepped down because %q", last.Reason)
	}
	if err := l.script("heal"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb1 to take the VIPs back", 10*time.Second, func() bool {
		return l.state("lb1") == "MASTER" && l.holdsVIP("lb1") && !l.holdsVIP("lb2")
	})
	s := p.stop(t)
	for _, o := range s.Outages {
		t.Logf("isolated master: client outage %.1f ms (%d failed probes)", o.MS, o.Failed)
	}
}
