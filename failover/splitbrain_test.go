package failover

import (
	"slices"
	"testing"
	"time"
)

const (
	macLo = "02:00:00:00:00:01"
	macHi = "02:00:00:00:00:02"
	// macStranger is neither node's: a misconfigured box or a spoofer.
	macStranger = "02:00:00:00:00:99"
)

// TestSplitBrainDefence covers the second heartbeat path (a FAULT advert
// makes the backup take over at once), the announcements of a master
// alone, and the ARP-based defence against a cut heartbeat path.
func TestSplitBrainDefence(t *testing.T) {
	lb1 := cfg("lb1", 150, true)
	lb2 := cfg("lb2", 100, true)
	// lb2 heard lb1 once, then lb1 went silent and lb2 took over at 190ms.
	lb2Took := []timed{{0, Start{}}, {10, masterAdvert("lb1", 150)}, {200, Tick{}}}
	// lb1 master alone since 200ms, then hears lb2's backup advert at 250.
	lb1Heard := []timed{{0, Start{}}, {200, Tick{}}, {250, Advert{Node: "lb2", Priority: 100, State: Backup}}}
	cases := []stepCase{
		{name: "a master in FAULT makes the backup take over at once", cfg: lb2,
			setup: []timed{{0, Start{}}, {100, masterAdvert("lb1", 150)}},
			ev:    Advert{Node: "lb1", Priority: 150, State: Fault}, now: 120, want: Master,
			acts: []string{"BACKUP>MASTER", "claim", "advert"}, reason: "peer lb1 is in FAULT"},
		{name: "a FAULT advert respects holds", cfg: lb2,
			setup: []timed{{0, Start{}}, {1, Hold{Reason: "syncing", On: true}}, {100, masterAdvert("lb1", 150)}},
			ev:    Advert{Node: "lb1", Priority: 150, State: Fault}, now: 120, want: Backup},
		{name: "a master alone announces at once when the timer is due", cfg: lb2,
			setup: []timed{{0, Start{}}, {200, Tick{}}},
			ev:    Tick{}, now: 1200, want: Master, acts: []string{"advert", "announce"},
			checkFn: func(t *testing.T, m Machine) {
				if !m.NextAnnounceAt.Equal(at(2200)) || !m.AloneSince.Equal(at(1200)) {
					t.Errorf("next announce %v, alone since %v", m.NextAnnounceAt, m.AloneSince)
				}
			}},
		{name: "a master hearing its peer does not announce", cfg: lb1, setup: lb1Heard,
			ev: Tick{}, now: 300, want: Master, acts: []string{"advert"}},
		{name: "a master announces 1.5 intervals after the peer went silent", cfg: lb1, setup: lb1Heard,
			ev: Tick{}, now: 326, want: Master, acts: []string{"advert", "announce"}},
		{name: "a rival with precedence makes a master with a silent peer step down", cfg: lb2, setup: lb2Took,
			ev: Rival{VIP: "198.18.0.100", MAC: macHi, OwnMAC: macLo, PeerMAC: macHi}, now: 300, want: Backup,
			acts: []string{"MASTER>BACKUP", "release", "advert"}, reason: "peer lb1 has precedence",
			checkFn: func(t *testing.T, m Machine) {
				if !m.RivalUntil.Equal(at(300).Add(RivalHold)) || m.Rival != macHi {
					t.Errorf("rival %q until %v", m.Rival, m.RivalUntil)
				}
			}},
		{name: "a backup holds back while the rival announces", cfg: lb2,
			setup: append(slices.Clone(lb2Took), timed{300, Rival{VIP: "198.18.0.100", MAC: macHi, OwnMAC: macLo, PeerMAC: macHi}}),
			ev:    Tick{}, now: 600, want: Backup,
			checkFn: func(t *testing.T, m Machine) {
				if d := m.Deadline(); d.Before(at(600)) {
					t.Errorf("deadline %v is in the past: the loop would spin", d)
				}
			}},
		{name: "the backup takes over once the rival stops announcing", cfg: lb2,
			setup: append(slices.Clone(lb2Took), timed{300, Rival{VIP: "198.18.0.100", MAC: macHi, OwnMAC: macLo, PeerMAC: macHi}}, timed{600, Tick{}}),
			ev:    Tick{}, now: 300 + 3000, want: Master, reason: "stopped announcing"},
		{name: "an advert ends the rival hold", cfg: lb2,
			setup: append(slices.Clone(lb2Took), timed{300, Rival{VIP: "198.18.0.100", MAC: macHi, OwnMAC: macLo, PeerMAC: macHi}}),
			ev:    masterAdvert("lb1", 150), now: 400, want: Backup, acts: none,
			checkFn: func(t *testing.T, m Machine) {
				if !m.RivalUntil.IsZero() {
					t.Errorf("rival hold kept: %v", m.RivalUntil)
				}
			}},
		{name: "a master that wins the tie-break announces again", cfg: lb1,
			setup: []timed{{0, Start{}}, {10, Advert{Node: "lb2", Priority: 100, State: Backup}}, {200, Tick{}}},
			ev:    Rival{VIP: "198.18.0.100", MAC: macLo, OwnMAC: macHi, PeerMAC: macLo}, now: 300, want: Master,
			acts: []string{"announce"}},
		{name: "answers to a rival are rate-limited", cfg: lb1,
			setup: []timed{{0, Start{}}, {10, Advert{Node: "lb2", Priority: 100, State: Backup}}, {200, Tick{}},
				{300, Rival{VIP: "198.18.0.100", MAC: macLo, OwnMAC: macHi, PeerMAC: macLo}}},
			ev: Rival{VIP: "198.18.0.101", MAC: macLo, OwnMAC: macHi, PeerMAC: macLo}, now: 320, want: Master, acts: none},
		{name: "a master announces again when the silent peer is heard again", cfg: lb1,
			setup: append(slices.Clone(lb1Heard), timed{326, Tick{}}),
			ev:    Advert{Node: "lb2", Priority: 100, State: Backup}, now: 900, want: Master, acts: []string{"announce"}},
		{name: "one announcement when the returning peer is also master", cfg: lb1,
			setup: append(slices.Clone(lb1Heard), timed{326, Tick{}}),
			ev:    masterAdvert("lb2", 100), now: 900, want: Master, acts: []string{"advert", "announce"}},
		{name: "a rival is ignored while the peer is heard", cfg: lb1, setup: lb1Heard,
			ev: Rival{VIP: "198.18.0.100", MAC: macLo, OwnMAC: macHi, PeerMAC: macLo}, now: 260, want: Master, acts: none},
		{name: "with no peer known another box is a conflict, however low its MAC", cfg: lb1,
			setup: []timed{{0, Start{}}, {200, Tick{}}},
			ev:    Rival{VIP: "198.18.0.100", MAC: macLo, OwnMAC: macHi}, now: 300, want: Master, acts: []string{"announce"}},
		{name: "a stranger does not hold a backup back", cfg: lb2,
			setup: []timed{{0, Start{}}, {10, masterAdvert("lb1", 150)}, {100, Rival{VIP: "198.18.0.100", MAC: macStranger, OwnMAC: macLo, PeerMAC: macHi}}},
			ev:    Tick{}, now: 200, want: Master, reason: "silent"},
		{name: "a stranger with a lower MAC does not make a master step down", cfg: lb2, setup: lb2Took,
			ev: Rival{VIP: "198.18.0.100", MAC: "02:00:00:00:00:00", OwnMAC: macLo, PeerMAC: macHi}, now: 300, want: Master,
			acts: []string{"announce"},
			checkFn: func(t *testing.T, m Machine) {
				if !m.RivalUntil.IsZero() || m.Rival != "" {
					t.Errorf("a stranger armed the rival hold: %q until %v", m.Rival, m.RivalUntil)
				}
			}},
		{name: "a master answers a stranger even while the peer is heard", cfg: lb1, setup: lb1Heard,
			ev: Rival{VIP: "198.18.0.100", MAC: macStranger, OwnMAC: macHi, PeerMAC: macLo}, now: 260, want: Master,
			acts: []string{"announce"}},
		{name: "answers to a stranger are rate-limited", cfg: lb1,
			setup: append(slices.Clone(lb1Heard), timed{260, Rival{VIP: "198.18.0.100", MAC: macStranger, OwnMAC: macHi, PeerMAC: macLo}}),
			ev:    Rival{VIP: "198.18.0.100", MAC: macStranger, OwnMAC: macHi, PeerMAC: macLo}, now: 280, want: Master, acts: none},
		{name: "a backup ignores a stranger", cfg: lb2, setup: []timed{{0, Start{}}, {10, masterAdvert("lb1", 150)}},
			ev: Rival{VIP: "198.18.0.100", MAC: macStranger, OwnMAC: macLo, PeerMAC: macHi}, now: 100, want: Backup, acts: none,
			checkFn: func(t *testing.T, m Machine) {
				if !m.RivalUntil.IsZero() {
					t.Errorf("rival hold armed by a stranger")
				}
			}},
		{name: "a backup with a silent peer does not claim while a rival announces", cfg: lb2,
			setup: []timed{{0, Start{}}, {10, masterAdvert("lb1", 150)}, {100, Rival{VIP: "198.18.0.100", MAC: macHi, OwnMAC: macLo, PeerMAC: macHi}}},
			ev:    Tick{}, now: 200, want: Backup},
		{name: "our own announcements are not a rival", cfg: lb2, setup: lb2Took,
			ev: Rival{VIP: "198.18.0.100", MAC: macLo, OwnMAC: macLo}, now: 300, want: Master, acts: none},
	}
	runCases(t, cases)
}

func TestAloneAnnouncementsAreRefreshes(t *testing.T) {
	c := cfg("lb2", 100, true)
	var m Machine
	var acts []Action
	for _, e := range []timed{{0, Start{}}, {200, Tick{}}, {1200, Tick{}}, {2200, Tick{}}} {
		m, acts = c.Step(m, e.ev, at(e.ms))
		var ann []Announce
		for _, a := range acts {
			if a, ok := a.(Announce); ok {
				ann = append(ann, a)
			}
		}
		switch e.ms {
		case 1200:
			if len(ann) != 1 || ann[0].Refresh {
				t.Errorf("at 1200ms: %+v, want one first announcement", ann)
			}
		case 2200:
			if len(ann) != 1 || !ann[0].Refresh {
				t.Errorf("at 2200ms: %+v, want one refresh", ann)
			}
		}
	}
}

// TestHeldMasterHandsOver: a master that becomes held (its witness went
// quiet while its link stayed up) hands over to a live backup that is not
// held, like a switchover, and preempts back once free.
func TestHeldMasterHandsOver(t *testing.T) {
	lb1 := cfg("lb1", 150, true)
	backupAdvert := func(held bool) Advert { return Advert{Node: "lb2", Priority: 100, State: Backup, Held: held} }
	const witness = "witness 198.18.0.2 does not answer"
	master := []timed{{0, Start{}}, {200, Tick{}}, {210, backupAdvert(false)}}
	cases := []stepCase{
		{name: "a held master hands over to a free backup", cfg: lb1, setup: master,
			ev: Hold{Reason: witness, On: true, HandOver: true}, now: 220, want: Master, acts: []string{"advert0"},
			checkFn: func(t *testing.T, m Machine) {
				if m.LeaveBy.IsZero() || !m.Demoting || m.HandOver == "" {
					t.Errorf("not handing over: %+v", m)
				}
			}},
		{name: "a hold that only keeps a backup back does not hand over", cfg: lb1, setup: master,
			ev: Hold{Reason: "waiting for the first round of health checks (cluster web)", On: true}, now: 220, want: Master, acts: none},
		{name: "not to a backup that is held too", cfg: lb1,
			setup: []timed{{0, Start{}}, {200, Tick{}}, {210, backupAdvert(true)}},
			ev:    Hold{Reason: witness, On: true, HandOver: true}, now: 220, want: Master, acts: none},
		{name: "not to a silent peer", cfg: lb1, setup: master,
			ev: Hold{Reason: witness, On: true, HandOver: true}, now: 400, want: Master, acts: none},
		{name: "released once the peer is master, without NoPreempt", cfg: lb1,
			setup: append(slices.Clone(master), timed{220, Hold{Reason: witness, On: true, HandOver: true}},
				timed{240, masterAdvert("lb2", 100)}),
			ev: Tick{}, now: 290, want: Backup, reason: "held (" + witness + "): handed over to lb2",
			checkFn: func(t *testing.T, m Machine) {
				if m.NoPreempt {
					t.Error("NoPreempt set by a hand-over")
				}
			}},
		{name: "preempts back once the hold is released", cfg: lb1,
			setup: append(slices.Clone(master), timed{220, Hold{Reason: witness, On: true, HandOver: true}},
				timed{240, masterAdvert("lb2", 100)}, timed{290, Tick{}}, timed{500, Hold{Reason: witness}}),
			ev: masterAdvert("lb2", 100), now: 520, want: Master, reason: "preempting lb2"},
		{name: "an abandoned hand-over is not retried at once", cfg: lb1,
			setup: append(slices.Clone(master), timed{220, Hold{Reason: witness, On: true, HandOver: true}},
				timed{230, backupAdvert(false)}, timed{450, Tick{}}),
			ev: backupAdvert(false), now: 460, want: Master, acts: none},
	}
	runCases(t, cases)
}

func TestHoldDown(t *testing.T) {
	c := cfg("lb1", 150, true)
	c.LinkHoldDown = time.Second
	for losses, want := range []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		if got := c.HoldDown(losses); got != want {
			t.Errorf("HoldDown(%d) = %v, want %v", losses, got, want)
		}
	}
	c.LinkHoldDown = 0
	if got := c.HoldDown(3); got != 0 {
		t.Errorf("disabled hold-down = %v", got)
	}
}

// TestFlapDamping: a link that comes back must stay up for the hold-down
// before the node preempts, and each further loss doubles it; it never
// delays taking over a silent master.
func TestFlapDamping(t *testing.T) {
	lb1 := cfg("lb1", 150, true)
	lb1.LinkHoldDown = time.Second
	down := func(ms int) timed { return timed{ms, Link{Iface: "eth0"}} }
	up := func(ms int) timed { return timed{ms, Link{Iface: "eth0", Up: true}} }
	once := []timed{{0, Start{}}, {200, Tick{}}, down(300), up(400)}
	cases := []stepCase{
		{name: "no preempt during the hold-down", cfg: lb1, setup: once,
			ev: masterAdvert("lb2", 100), now: 420, want: Backup, acts: none,
			checkFn: func(t *testing.T, m Machine) {
				if !m.PreemptAt.Equal(at(1400)) {
					t.Errorf("preempt at %v, want %v", m.PreemptAt, at(1400))
				}
			}},
		{name: "preempts once the link was stable", cfg: lb1,
			setup: append(slices.Clone(once), timed{420, masterAdvert("lb2", 100)}, timed{1380, masterAdvert("lb2", 100)}),
			ev:    Tick{}, now: 1400, want: Master, reason: "after the link was stable for 1000ms"},
		{name: "a second loss doubles the hold-down", cfg: lb1,
			setup: append(slices.Clone(once), down(500), up(600)),
			ev:    masterAdvert("lb2", 100), now: 620, want: Backup,
			checkFn: func(t *testing.T, m Machine) {
				if !m.PreemptAt.Equal(at(2600)) {
					t.Errorf("preempt at %v, want %v", m.PreemptAt, at(2600))
				}
			}},
		{name: "losses older than the window do not count", cfg: lb1,
			setup: append(slices.Clone(once), down(40000), up(40100)),
			ev:    masterAdvert("lb2", 100), now: 40120, want: Backup,
			checkFn: func(t *testing.T, m Machine) {
				if !m.PreemptAt.Equal(at(41100)) {
					t.Errorf("preempt at %v, want %v", m.PreemptAt, at(41100))
				}
			}},
		{name: "the hold-down never delays taking over a silent master", cfg: lb1,
			setup: append(slices.Clone(once), timed{420, masterAdvert("lb2", 100)}),
			ev:    Tick{}, now: 420 + 200, want: Master, reason: "silent"},
	}
	runCases(t, cases)
}
