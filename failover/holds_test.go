package failover

import (
	"slices"
	"testing"
	"time"
)

// TestHolds runs the hold policy over one situation per rule.
func TestHolds(t *testing.T) {
	c := cfg("lb2", 100, true) // advert 50ms, master down ~180ms
	now := at(10000)
	backup := Machine{State: Backup, Since: at(9000)}
	master := Machine{State: Master, Since: at(9000)}
	fault := Machine{State: Backup, Since: at(9900), Holds: []string{HoldAfterFault}}
	liveMaster := PeerAdvert{Node: "lb1", Priority: 150, State: "MASTER", At: at(9990)}
	checked := func(ms int, healthy bool) []ClusterHealth {
		return []ClusterHealth{{Settle: time.Second, Servers: []ServerHealth{
			{CheckedAt: at(9950), Healthy: true}, {CheckedAt: at(ms), Healthy: healthy}}}}
	}
	for _, tt := range []struct {
		name string
		m    Machine
		f    HoldFacts
		want []WantedHold
	}{
		{name: "nothing holds", m: backup, f: HoldFacts{Started: at(0), Peer: liveMaster}},
		{name: "first round of health checks, per cluster", m: backup,
			f: HoldFacts{FirstRoundPending: []string{"web", "dns"}},
			want: []WantedHold{
				{HoldFirstHealth, "waiting for the first round of health checks (cluster web)"},
				{HoldFirstHealth, "waiting for the first round of health checks (cluster dns)"}}},
		{name: "after a fault, a server not checked since", m: fault, f: HoldFacts{Health: checked(9800, true)},
			want: []WantedHold{{HoldFaultSettling, HoldAfterFault}}},
		{name: "after a fault, a server checked since but down", m: fault, f: HoldFacts{Health: checked(9950, false)},
			want: []WantedHold{{HoldFaultSettling, HoldAfterFault}}},
		{name: "after a fault, every server checked since and up", m: fault, f: HoldFacts{Health: checked(9950, true)}},
		{name: "after a fault, a dead server holds no longer than the settle time",
			m: Machine{State: Backup, Since: at(8000), Holds: []string{HoldAfterFault}}, f: HoldFacts{Health: checked(9950, false)}},
		{name: "no fault hold unless the election set one", m: backup, f: HoldFacts{Health: checked(9800, false)}},
		{name: "a witness that never answered", m: backup, f: HoldFacts{Witness: "198.18.0.2"},
			want: []WantedHold{{HoldWitnessLost, "witness 198.18.0.2 does not answer: this box may be cut off"}}},
		{name: "a backup's witness answered within two intervals", m: backup,
			f: HoldFacts{Witness: "198.18.0.2", WitnessAnswer: now.Add(-90 * time.Millisecond)}},
		{name: "a backup's witness silent for more than two intervals", m: backup,
			f:    HoldFacts{Witness: "198.18.0.2", WitnessAnswer: now.Add(-110 * time.Millisecond)},
			want: []WantedHold{{HoldWitnessLost, "witness 198.18.0.2 does not answer: this box may be cut off"}}},
		{name: "a master waits four intervals for its witness", m: master,
			f: HoldFacts{Witness: "198.18.0.2", WitnessAnswer: now.Add(-190 * time.Millisecond)}},
		{name: "a master's witness silent for more than four intervals", m: master,
			f:    HoldFacts{Witness: "198.18.0.2", WitnessAnswer: now.Add(-210 * time.Millisecond)},
			want: []WantedHold{{HoldWitnessLost, "witness 198.18.0.2 does not answer: this box may be cut off"}}},
		{name: "another box advertises under this node's name", m: master,
			f:    HoldFacts{Node: "lb2", NameClashFrom: "198.18.0.12:7946", NameClashAt: now.Add(-time.Second)},
			want: []WantedHold{{HoldNameClash, `node name "lb2" is also used by the box at 198.18.0.12:7946: give each box its own node.name`}}},
		{name: "a name clash last heard long ago", m: backup,
			f: HoldFacts{Node: "lb2", NameClashFrom: "198.18.0.12:7946", NameClashAt: now.Add(-NameClashFor - time.Millisecond)}},
		{name: "config drift from a live master", m: backup, f: HoldFacts{Peer: liveMaster, ConfigDiff: []string{"failover", "clusters"}},
			want: []WantedHold{{HoldDrift, "config differs from master lb1's (failover, clusters): will not preempt"}}},
		{name: "no drift hold from a silent master", m: backup,
			f: HoldFacts{Peer: PeerAdvert{Node: "lb1", Priority: 150, State: "MASTER", At: at(9800)}, ConfigDiff: []string{"config"}}},
		{name: "no drift hold from a leaving master", m: backup,
			f: HoldFacts{Peer: PeerAdvert{Node: "lb1", Priority: 0, State: "MASTER", At: at(9990)}, ConfigDiff: []string{"config"}}},
		{name: "no drift hold from a backup", m: backup,
			f: HoldFacts{Peer: PeerAdvert{Node: "lb1", Priority: 150, State: "BACKUP", At: at(9990)}, ConfigDiff: []string{"config"}}},
		{name: "persistence sync from a live master", m: backup, f: HoldFacts{Started: at(0), Peer: liveMaster, Persistence: true},
			want: []WantedHold{{HoldSync, "waiting for persistence sync from lb1"}}},
		{name: "persistence in sync", m: backup, f: HoldFacts{Started: at(0), Peer: liveMaster, Persistence: true, BulkDone: true}},
		{name: "no sync hold without persistence", m: backup, f: HoldFacts{Started: at(0), Peer: liveMaster}},
		{name: "start-up grace with persistence and no peer heard", m: backup,
			f:    HoldFacts{Started: now.Add(-StartupGrace + time.Millisecond), Persistence: true},
			want: []WantedHold{{HoldStartupGrace, "start-up grace: waiting up to 2s for the peer"}}},
		{name: "start-up grace over", m: backup, f: HoldFacts{Started: now.Add(-StartupGrace), Persistence: true}},
		{name: "no start-up grace once the peer was heard", m: backup,
			f: HoldFacts{Started: now, Persistence: true, Peer: PeerAdvert{Node: "lb1", Priority: 150, State: "BACKUP", At: at(9990)}}},
		{name: "no start-up grace without persistence", m: backup, f: HoldFacts{Started: now}},
	} {
		got, _ := c.Holds(tt.m, tt.f, HoldMemory{}, now)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s:\n got %v\nwant %v", tt.name, got, tt.want)
		}
	}
}

// TestHoldsWitnessBack: once the witness answers again, the node waits
// for the health checks that failed while it was cut off, as after a
// fault, and not after it has settled.
func TestHoldsWitnessBack(t *testing.T) {
	c := cfg("lb2", 100, true)
	m := Machine{State: Backup, Since: at(0)}
	stale := []ClusterHealth{{Settle: time.Second, Servers: []ServerHealth{{CheckedAt: at(900), Healthy: false}}}}
	f := HoldFacts{Witness: "198.18.0.2", Health: stale}
	got, mem := c.Holds(m, f, HoldMemory{}, at(1000))
	if len(got) != 1 || got[0].Kind != HoldWitnessLost {
		t.Fatalf("witness silent: %v", got)
	}
	f.WitnessAnswer = at(1100)
	got, mem = c.Holds(m, f, mem, at(1100))
	if want := []WantedHold{{HoldWitnessSettling, "waiting for health checks after the witness answered again"}}; !slices.Equal(got, want) {
		t.Fatalf("witness back: %v, want %v", got, want)
	}
	f.WitnessAnswer = at(1200)
	f.Health = []ClusterHealth{{Settle: time.Second, Servers: []ServerHealth{{CheckedAt: at(1150), Healthy: true}}}}
	if got, _ = c.Holds(m, f, mem, at(1200)); got != nil {
		t.Errorf("health caught up: %v", got)
	}
	// A witness that was never lost never waits for health checks.
	f.Health = stale
	if got, _ = c.Holds(m, f, HoldMemory{}, at(1200)); got != nil {
		t.Errorf("witness never lost: %v", got)
	}
}

// TestHoldChanges posts new holds before releases, marks only the
// witness's as a hand-over, and posts nothing when nothing changed.
func TestHoldChanges(t *testing.T) {
	witness := WantedHold{HoldWitnessLost, "witness 198.18.0.2 does not answer: this box may be cut off"}
	back := WantedHold{HoldWitnessSettling, "waiting for health checks after the witness answered again"}
	grace := WantedHold{HoldStartupGrace, "start-up grace: waiting up to 2s for the peer"}
	got := HoldChanges([]string{witness.Reason, grace.Reason}, []WantedHold{back, grace})
	want := []Hold{{Reason: back.Reason, On: true}, {Reason: witness.Reason}}
	if !slices.Equal(got, want) {
		t.Errorf("witness back: %v, want %v", got, want)
	}
	got = HoldChanges(nil, []WantedHold{witness})
	if want := []Hold{{Reason: witness.Reason, On: true, HandOver: true}}; !slices.Equal(got, want) {
		t.Errorf("witness lost: %v, want %v", got, want)
	}
	if got := HoldChanges([]string{grace.Reason}, []WantedHold{grace}); got != nil {
		t.Errorf("no change: %v", got)
	}
	for k := HoldFirstHealth; k <= HoldStartupGrace; k++ {
		if k.HandsOver() != (k == HoldWitnessLost) {
			t.Errorf("%v.HandsOver() = %v", k, k.HandsOver())
		}
	}
}
