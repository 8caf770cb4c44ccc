package failover

import (
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func cfg(node string, prio uint8, preempt bool) Config {
	return Config{Node: node, Priority: prio, Preempt: preempt,
		AdvertInterval: 50 * time.Millisecond, Track: []string{"eth0"}}
}

func TestTimers(t *testing.T) {
	c := cfg("lb2", 100, true)
	// skew = 156*50ms/256 = 30.46875ms; master down = 180.46875ms
	if got, want := c.Skew(), 30468750*time.Nanosecond; got != want {
		t.Errorf("skew = %v, want %v", got, want)
	}
	if got, want := c.MasterDown(), 180468750*time.Nanosecond; got != want {
		t.Errorf("master down = %v, want %v", got, want)
	}
	hi := cfg("lb1", 150, true)
	if hi.MasterDown() >= c.MasterDown() {
		t.Errorf("higher priority must time out first: %v >= %v", hi.MasterDown(), c.MasterDown())
	}
}

// kinds returns the action types in order, with transitions shown as
// FROM>TO, for compact expectations.
func kinds(acts []Action) []string {
	var out []string
	for _, a := range acts {
		switch a := a.(type) {
		case Transition:
			out = append(out, a.From.String()+">"+a.To.String())
		case ClaimVIPs:
			out = append(out, "claim")
		case ReleaseVIPs:
			out = append(out, "release")
		case Announce:
			out = append(out, "announce")
		case SendAdvert:
			if a.Priority == 0 {
				out = append(out, "advert0")
			} else {
				out = append(out, "advert")
			}
		}
	}
	return out
}

func reasonOf(acts []Action) string {
	for _, a := range acts {
		if t, ok := a.(Transition); ok {
			return t.Reason
		}
	}
	return ""
}

type stepCase struct {
	name    string
	cfg     Config
	setup   []timed // events applied first, actions ignored
	ev      Event
	now     int // ms
	want    State
	acts    []string
	reason  string // substring of the transition reason
	checkFn func(t *testing.T, m Machine)
}

type timed struct {
	ms int
	ev Event
}

// none expects a step with no actions at all.
var none = []string{}

func masterAdvert(node string, prio uint8) Advert {
	return Advert{Node: node, Priority: prio, State: Master}
}

func TestStep(t *testing.T) {
	lb1 := cfg("lb1", 150, true)
	lb2 := cfg("lb2", 100, true)
	started := []timed{{0, Start{}}}
	masterLb2 := []timed{{0, Start{}}, {200, Tick{}}} // lb2 alone: master at 180ms
	cases := []stepCase{
		{name: "init to backup", cfg: lb2, ev: Start{}, now: 0, want: Backup,
			acts: []string{"INIT>BACKUP", "advert"}, reason: "started",
			checkFn: func(t *testing.T, m Machine) {
				if !m.MasterDownAt.Equal(t0.Add(lb2.MasterDown())) {
					t.Errorf("master down at %v", m.MasterDownAt)
				}
			}},
		{name: "start with tracked link down is fault", cfg: lb2,
			setup: []timed{{0, Link{Iface: "eth0", Up: false}}}, ev: Start{}, now: 0, want: Fault,
			acts: []string{"INIT>FAULT", "advert", "release"}, reason: "eth0"},
		{name: "backup before master-down stays", cfg: lb2, setup: started,
			ev: Tick{}, now: 180, want: Backup, acts: []string{"advert"}},
		{name: "backup takes over after 3 adverts plus skew", cfg: lb2, setup: started,
			ev: Tick{}, now: 181, want: Master, acts: []string{"BACKUP>MASTER", "claim", "advert"},
			reason: "no master heard for 181ms"},
		{name: "silence of a heard master is named", cfg: lb2,
			setup: []timed{{0, Start{}}, {10, masterAdvert("lb1", 150)}},
			ev:    Tick{}, now: 191, want: Master, reason: "peer lb1 silent for 181ms"},
		{name: "master advert holds backup off", cfg: lb2,
			setup: []timed{{0, Start{}}, {150, masterAdvert("lb1", 150)}},
			ev:    Tick{}, now: 250, want: Backup, acts: []string{"advert"}},
		{name: "backup adverts do not hold a backup off", cfg: lb2,
			setup: []timed{{0, Start{}}, {150, Advert{Node: "lb1", Priority: 150, State: Backup}}},
			ev:    Tick{}, now: 181, want: Master},
		{name: "priority 0 from master: take over after skew", cfg: lb2,
			setup: []timed{{0, Start{}}, {100, masterAdvert("lb1", 150)}},
			ev:    Advert{Node: "lb1", Priority: 0, State: Master}, now: 120, want: Backup,
			checkFn: func(t *testing.T, m Machine) {
				if want := at(120).Add(lb2.Skew()); !m.MasterDownAt.Equal(want) {
					t.Errorf("master down at %v, want %v", m.MasterDownAt, want)
				}
			}},
		{name: "after priority 0 the reason says the peer left", cfg: lb2,
			setup: []timed{{0, Start{}}, {100, masterAdvert("lb1", 150)}, {120, Advert{Node: "lb1", Priority: 0, State: Master}}},
			ev:    Tick{}, now: 151, want: Master, reason: "peer lb1 left"},
		{name: "preempt a lower master at once", cfg: lb1, setup: started,
			ev: masterAdvert("lb2", 100), now: 10, want: Master,
			acts: []string{"BACKUP>MASTER", "claim", "advert"}, reason: "preempting lb2 (priority 100 < 150)"},
		{name: "no preempt keeps backup", cfg: cfg("lb1", 150, false), setup: started,
			ev: masterAdvert("lb2", 100), now: 10, want: Backup, acts: none},
		{name: "no preempt still takes over a silent master", cfg: cfg("lb1", 150, false),
			setup: []timed{{0, Start{}}, {10, masterAdvert("lb2", 100)}},
			ev:    Tick{}, now: 200, want: Master, reason: "peer lb2 silent"},
		{name: "preempt delay waits", cfg: func() Config { c := lb1; c.PreemptDelay = time.Second; return c }(),
			setup: []timed{{0, Start{}}, {10, masterAdvert("lb2", 100)}, {500, masterAdvert("lb2", 100)}, {850, masterAdvert("lb2", 100)}},
			ev:    Tick{}, now: 900, want: Backup},
		{name: "preempt delay expires", cfg: func() Config { c := lb1; c.PreemptDelay = time.Second; return c }(),
			setup: []timed{{0, Start{}}, {10, masterAdvert("lb2", 100)}, {500, masterAdvert("lb2", 100)}, {980, masterAdvert("lb2", 100)}},
			ev:    Tick{}, now: 1010, want: Master, reason: "preempting lb2"},
		{name: "equal priority: smaller name preempts", cfg: cfg("lb1", 100, true), setup: started,
			ev: masterAdvert("lb2", 100), now: 10, want: Master},
		{name: "equal priority: larger name does not", cfg: cfg("lb2", 100, true), setup: started,
			ev: masterAdvert("lb1", 100), now: 10, want: Backup},
		{name: "master sends adverts on time", cfg: lb2, setup: masterLb2,
			ev: Tick{}, now: 250, want: Master, acts: []string{"advert"}},
		{name: "master preempted keeps its VIPs for the overlap (make before break)", cfg: lb2, setup: masterLb2,
			ev: masterAdvert("lb1", 150), now: 260, want: Master, acts: none,
			checkFn: func(t *testing.T, m Machine) {
				if m.HandedTo != "lb1" || !m.LeaveBy.Equal(at(260).Add(lb2.AdvertInterval)) {
					t.Errorf("handed to %q, leave by %v", m.HandedTo, m.LeaveBy)
				}
			}},
		{name: "master preempted sends no advert during the overlap", cfg: lb2,
			setup: append(slices.Clone(masterLb2), timed{260, masterAdvert("lb1", 150)}),
			ev:    Tick{}, now: 300, want: Master, acts: none},
		{name: "master yields to a higher master once the overlap ends", cfg: lb2,
			setup: append(slices.Clone(masterLb2), timed{260, masterAdvert("lb1", 150)}),
			ev:    Tick{}, now: 310, want: Backup,
			acts: []string{"MASTER>BACKUP", "release", "advert"}, reason: "peer lb1 is master with higher precedence (priority 150 vs 100)"},
		{name: "a longer overlap keeps the VIPs longer", cfg: func() Config { c := lb2; c.Overlap = 150 * time.Millisecond; return c }(),
			setup: append(slices.Clone(masterLb2), timed{260, masterAdvert("lb1", 150)}, timed{310, Tick{}}),
			ev:    Tick{}, now: 409, want: Master, acts: none},
		{name: "stopped during the overlap: to INIT", cfg: lb2,
			setup: append(slices.Clone(masterLb2), timed{260, masterAdvert("lb1", 150)}, timed{270, Stop{}}),
			ev:    Tick{}, now: 310, want: Init, acts: []string{"MASTER>INIT", "release"}, reason: "handed over to lb1"},
		{name: "two masters: winner announces again", cfg: lb1,
			setup: []timed{{0, Start{}}, {200, Tick{}}},
			ev:    masterAdvert("lb2", 100), now: 260, want: Master, acts: []string{"advert", "announce"}},
		{name: "two masters, equal priority, name decides (loser)", cfg: cfg("lb2", 100, false),
			setup: append(slices.Clone(masterLb2), timed{260, masterAdvert("lb1", 100)}),
			ev:    Tick{}, now: 310, want: Backup},
		{name: "two masters, equal priority, name decides (winner)", cfg: cfg("lb1", 100, false),
			setup: []timed{{0, Start{}}, {200, Tick{}}},
			ev:    masterAdvert("lb2", 100), now: 260, want: Master, acts: []string{"advert", "announce"}},
		{name: "preempting master announces again when the old master steps down", cfg: lb1,
			setup: []timed{{0, Start{}}, {10, masterAdvert("lb2", 100)}},
			ev:    Advert{Node: "lb2", Priority: 100, State: Backup}, now: 11, want: Master, acts: []string{"announce"}},
		{name: "master ignores a lower backup", cfg: lb2, setup: masterLb2,
			ev: Advert{Node: "lb1", Priority: 150, State: Backup}, now: 260, want: Master, acts: none},
		{name: "master answers a leaving backup", cfg: lb2, setup: masterLb2,
			ev: Advert{Node: "lb1", Priority: 0, State: Backup}, now: 260, want: Master, acts: []string{"advert"}},
		{name: "carrier loss: master to fault releases", cfg: lb2, setup: masterLb2,
			ev: Link{Iface: "eth0", Up: false}, now: 300, want: Fault,
			acts: []string{"MASTER>FAULT", "advert", "release"}, reason: "interface eth0 lost carrier"},
		{name: "carrier loss on untracked link ignored", cfg: lb2, setup: masterLb2,
			ev: Link{Iface: "eth1", Up: false}, now: 300, want: Master, acts: none},
		{name: "fault keeps advertising", cfg: lb2,
			setup: []timed{{0, Start{}}, {10, Link{Iface: "eth0"}}},
			ev:    Tick{}, now: 1000, want: Fault, acts: []string{"advert"}},
		{name: "fault ignores adverts", cfg: lb1,
			setup: []timed{{0, Start{}}, {10, Link{Iface: "eth0"}}},
			ev:    masterAdvert("lb2", 100), now: 20, want: Fault, acts: none},
		{name: "carrier back: fault to backup", cfg: lb2,
			setup: []timed{{0, Start{}}, {10, Link{Iface: "eth0"}}},
			ev:    Link{Iface: "eth0", Up: true}, now: 500, want: Backup,
			acts: []string{"FAULT>BACKUP", "advert"}, reason: "interface eth0 carrier restored"},
		{name: "leaving fault holds when asked to", cfg: func() Config { c := lb1; c.HoldAfterFault = true; return c }(),
			setup: []timed{{0, Start{}}, {10, Link{Iface: "eth0"}}, {500, Link{Iface: "eth0", Up: true}}},
			ev:    masterAdvert("lb2", 100), now: 510, want: Backup, acts: none,
			checkFn: func(t *testing.T, m Machine) {
				if !slices.Contains(m.Holds, HoldAfterFault) {
					t.Errorf("holds = %v, want %q", m.Holds, HoldAfterFault)
				}
			}},
		{name: "fault until every tracked link is back",
			cfg:   func() Config { c := lb2; c.Track = []string{"eth0", "eth1"}; return c }(),
			setup: []timed{{0, Start{}}, {10, Link{Iface: "eth0"}}, {20, Link{Iface: "eth1"}}},
			ev:    Link{Iface: "eth0", Up: true}, now: 500, want: Fault, acts: none},
		{name: "stop as master: priority 0, VIPs kept until the peer takes over", cfg: lb2, setup: masterLb2,
			ev: Stop{}, now: 300, want: Master, acts: []string{"advert0"}},
		{name: "stopping master repeats priority 0", cfg: lb2,
			setup: append(slices.Clone(masterLb2), timed{300, Stop{}}),
			ev:    Tick{}, now: 350, want: Master, acts: []string{"advert0"}},
		{name: "stopping master keeps the VIPs one interval after the peer is master", cfg: lb2,
			setup: append(slices.Clone(masterLb2), timed{300, Stop{}}),
			ev:    masterAdvert("lb1", 150), now: 340, want: Master, acts: none},
		{name: "stopping master releases one interval after the peer took over", cfg: lb2,
			setup: append(slices.Clone(masterLb2), timed{300, Stop{}}, timed{340, masterAdvert("lb1", 150)}),
			ev:    Tick{}, now: 390, want: Init,
			acts: []string{"MASTER>INIT", "release"}, reason: "handed over to lb1"},
		{name: "stopping master does not claim a split brain", cfg: cfg("lb1", 150, true),
			setup: []timed{{0, Start{}}, {200, Tick{}}, {300, Stop{}}},
			ev:    masterAdvert("lb2", 100), now: 340, want: Master, acts: none},
		{name: "stopping master releases at the deadline", cfg: lb2,
			setup: append(slices.Clone(masterLb2), timed{300, Stop{}}),
			ev:    Tick{}, now: 300 + 231, want: Init,
			acts: []string{"MASTER>INIT", "release"}, reason: "no peer took over"},
		{name: "repeated priority 0 does not delay the take-over", cfg: lb2,
			setup: []timed{{0, Start{}}, {100, masterAdvert("lb1", 150)}, {120, Advert{Node: "lb1", Priority: 0, State: Master}},
				{145, Advert{Node: "lb1", Priority: 0, State: Master}}},
			ev: Tick{}, now: 151, want: Master, reason: "peer lb1 left"},
		{name: "switchover: a master demoting keeps its VIPs and sends priority 0", cfg: lb1,
			setup: []timed{{0, Start{}}, {200, Tick{}}},
			ev:    Demote{}, now: 300, want: Master, acts: []string{"advert0"}},
		{name: "switchover: backup one interval after the peer took over", cfg: lb1,
			setup: []timed{{0, Start{}}, {200, Tick{}}, {300, Demote{}}, {340, masterAdvert("lb2", 100)}},
			ev:    Tick{}, now: 390, want: Backup,
			acts: []string{"MASTER>BACKUP", "release", "advert"}, reason: "switched over: handed over to lb2",
			checkFn: func(t *testing.T, m Machine) {
				if !m.NoPreempt {
					t.Error("NoPreempt not set after a switchover")
				}
			}},
		{name: "switchover: the old master does not preempt back", cfg: lb1,
			setup: []timed{{0, Start{}}, {200, Tick{}}, {300, Demote{}}, {340, masterAdvert("lb2", 100)}, {390, Tick{}}},
			ev:    masterAdvert("lb2", 100), now: 420, want: Backup, acts: none},
		{name: "switchover: the old master still takes over a silent peer", cfg: lb1,
			setup: []timed{{0, Start{}}, {200, Tick{}}, {300, Demote{}}, {340, masterAdvert("lb2", 100)}, {390, Tick{}},
				{420, masterAdvert("lb2", 100)}},
			ev: Tick{}, now: 620, want: Master, reason: "peer lb2 silent",
			checkFn: func(t *testing.T, m Machine) {
				if m.NoPreempt {
					t.Error("NoPreempt still set after becoming master again")
				}
			}},
		{name: "switchover abandoned when no peer takes over", cfg: lb1,
			setup: []timed{{0, Start{}}, {200, Tick{}}, {300, Demote{}}},
			ev:    Tick{}, now: 300 + 221, want: Master, acts: []string{"advert", "MASTER>MASTER"}, reason: "switchover abandoned"},
		{name: "demote of a backup does nothing", cfg: lb2, setup: started,
			ev: Demote{}, now: 30, want: Backup, acts: none},
		{name: "stop as backup: priority 0, nothing to release", cfg: lb2, setup: started,
			ev: Stop{}, now: 30, want: Init, acts: []string{"advert0", "BACKUP>INIT"}},
		{name: "a hold keeps a backup from taking over", cfg: lb2,
			setup: []timed{{0, Start{}}, {1, Hold{Reason: "syncing", On: true}}},
			ev:    Tick{}, now: 400, want: Backup, acts: []string{"advert"}},
		{name: "releasing the hold restarts an expired timer at the skew", cfg: lb2,
			setup: []timed{{0, Start{}}, {1, Hold{Reason: "syncing", On: true}}},
			ev:    Hold{Reason: "syncing"}, now: 400, want: Backup,
			checkFn: func(t *testing.T, m Machine) {
				if want := at(400).Add(lb2.Skew()); !m.MasterDownAt.Equal(want) {
					t.Errorf("master down at %v, want %v", m.MasterDownAt, want)
				}
			}},
		{name: "after the hold and the skew it takes over", cfg: lb2,
			setup: []timed{{0, Start{}}, {1, Hold{Reason: "syncing", On: true}}, {400, Hold{Reason: "syncing"}}},
			ev:    Tick{}, now: 431, want: Master, reason: "no master heard"},
		{name: "own adverts ignored", cfg: lb2, setup: started,
			ev: masterAdvert("lb2", 200), now: 10, want: Backup, acts: none},
	}
	runCases(t, cases)
}

func runCases(t *testing.T, cases []stepCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var m Machine
			for _, s := range tc.setup {
				m, _ = tc.cfg.Step(m, s.ev, at(s.ms))
			}
			got, acts := tc.cfg.Step(m, tc.ev, at(tc.now))
			if got.State != tc.want {
				t.Fatalf("state = %v, want %v (actions %v, reason %q)", got.State, tc.want, kinds(acts), reasonOf(acts))
			}
			if tc.acts != nil && !slices.Equal(kinds(acts), tc.acts) {
				t.Errorf("actions = %v, want %v", kinds(acts), tc.acts)
			}
			if tc.reason != "" && !strings.Contains(reasonOf(acts), tc.reason) {
				t.Errorf("reason = %q, want it to contain %q", reasonOf(acts), tc.reason)
			}
			if tc.checkFn != nil {
				tc.checkFn(t, got)
			}
		})
	}
}

// TestPairConverges runs two machines against each other through every
// order of start and checks that exactly one ends up master, the winner
// of the tie-break.
func TestPairConverges(t *testing.T) {
	for _, tc := range []struct {
		a, b   Config
		winner string
	}{
		{cfg("lb1", 150, true), cfg("lb2", 100, true), "lb1"},
		{cfg("lb1", 100, true), cfg("lb2", 100, true), "lb1"},
		{cfg("lb1", 100, false), cfg("lb2", 100, false), "lb1"},
		{cfg("lb1", 100, true), cfg("lb2", 150, true), "lb2"},
	} {
		p := newPair(tc.a, tc.b)
		p.run(2 * time.Second)
		if got := p.masters(); len(got) != 1 || got[0] != tc.winner {
			t.Errorf("%s/%d vs %s/%d: masters %v, want [%s]", tc.a.Node, tc.a.Priority, tc.b.Node, tc.b.Priority, got, tc.winner)
		}
	}
}

// pair simulates two nodes exchanging adverts instantly on a virtual clock.
type pair struct {
	cfg [2]Config
	m   [2]Machine
	now time.Time
}

func newPair(a, b Config) *pair {
	p := &pair{cfg: [2]Config{a, b}, now: t0}
	for i := range p.m {
		p.apply(i, Start{})
	}
	return p
}

func (p *pair) apply(i int, ev Event) {
	var acts []Action
	p.m[i], acts = p.cfg[i].Step(p.m[i], ev, p.now)
	for _, a := range acts {
		if sa, ok := a.(SendAdvert); ok {
			p.apply(1-i, Advert{Node: p.cfg[i].Node, Priority: sa.Priority, State: sa.State})
		}
	}
}

func (p *pair) run(d time.Duration) {
	end := p.now.Add(d)
	for p.now.Before(end) {
		p.now = p.now.Add(time.Millisecond)
		for i := range p.m {
			if dl := p.m[i].Deadline(); !dl.IsZero() && !dl.After(p.now) {
				p.apply(i, Tick{})
			}
		}
	}
}

func (p *pair) masters() []string {
	var out []string
	for i, m := range p.m {
		if m.State == Master {
			out = append(out, p.cfg[i].Node)
		}
	}
	return out
}

// TestStopHandsOverAtOnce: a stopping master's priority-0 advert makes the
// backup take over after the skew only, not the full master-down time.
func TestStopHandsOverAtOnce(t *testing.T) {
	p := newPair(cfg("lb1", 150, true), cfg("lb2", 100, true))
	p.run(time.Second)
	if got := p.masters(); len(got) != 1 || got[0] != "lb1" {
		t.Fatalf("masters before stop = %v", got)
	}
	p.apply(0, Stop{})
	p.run(p.cfg[1].Skew() + 2*time.Millisecond)
	if p.m[1].State != Master {
		t.Fatalf("lb2 is %v within the skew (%v) after lb1's stop, want MASTER", p.m[1].State, p.cfg[1].Skew())
	}
	p.run(p.cfg[0].AdvertInterval + time.Millisecond)
	if p.m[0].State != Init {
		t.Fatalf("stopping node is %v, want INIT once the peer took over", p.m[0].State)
	}
}

// TestHeldPairReleasedTogether: two backups whose holds are released at
// the same instant, long after their timers ran out, end with one master
// without a moment of two.
func TestHeldPairReleasedTogether(t *testing.T) {
	p := newPair(cfg("lb1", 150, true), cfg("lb2", 100, true))
	for i := range p.m {
		p.apply(i, Hold{Reason: "health", On: true})
	}
	p.run(time.Second)
	for i := range p.m {
		p.apply(i, Hold{Reason: "health"})
	}
	for range 100 {
		p.run(time.Millisecond)
		if got := p.masters(); len(got) > 1 {
			t.Fatalf("two masters after the holds were released: %v", got)
		}
	}
	if got := p.masters(); len(got) != 1 || got[0] != "lb1" {
		t.Fatalf("masters %v, want [lb1]", got)
	}
}
