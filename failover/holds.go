package failover

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// The hold policy: what keeps a node from becoming master now, the way
// pfsync holds CARP down. The node gathers the facts (HoldFacts) and
// posts the differences (HoldChanges); Config.Holds decides, purely, from
// the facts, the election state and the time.

// HoldKind says what a hold is for. Only the kind decides what a hold
// does (HandsOver); its Reason is for people.
type HoldKind uint8

// The kinds of hold, in the order Config.Holds lists them.
const (
	// HoldFirstHealth: a cluster's first round of health checks has not
	// completed, so the node would take the VIPs with an unknown pool.
	HoldFirstHealth HoldKind = iota + 1
	// HoldFaultSettling keeps HoldAfterFault, which the election sets
	// when the node leaves FAULT, while its health verdicts catch up.
	HoldFaultSettling
	// HoldWitnessLost: failover.witness does not answer, so this box may
	// be cut off from the network. The one kind that hands a master's
	// VIPs over.
	HoldWitnessLost
	// HoldWitnessSettling: the witness answers again, but the health
	// checks that failed while the box was cut off have not caught up.
	HoldWitnessSettling
	// HoldNameClash: another box advertises under this node's own name,
	// so the election never sees a peer and both would become master. A
	// plain hold: a running master keeps its VIPs (it was serving); a
	// backup or a newly started box does not take them.
	HoldNameClash
	// HoldDrift: a live master's config differs from this node's.
	HoldDrift
	// HoldSync: a live master's persistence table has not fully arrived,
	// so sticky clients would lose their server across the hand-over.
	HoldSync
	// HoldStartupGrace: persistence is on and the peer has never been
	// heard; wait StartupGrace for it before becoming master alone.
	HoldStartupGrace
)

var holdKindNames = [...]string{"", "first-health", "fault-settling", "witness-lost", "witness-settling",
	"name-clash", "drift", "sync", "startup-grace"}

func (k HoldKind) String() string {
	if int(k) < len(holdKindNames) && k != 0 {
		return holdKindNames[k]
	}
	return fmt.Sprintf("HoldKind(%d)", uint8(k))
}

// HandsOver reports whether a hold of this kind impairs a master too (see
// Hold.HandOver); the others only keep a backup back.
func (k HoldKind) HandsOver() bool { return k == HoldWitnessLost }

// NameClashFor is how long after the last advert heard under this node's
// name from another box the node stays held: the other box's adverts
// arrive every advert interval, so a few seconds of silence means it was
// renamed or stopped.
const NameClashFor = 5 * time.Second

// StartupGrace is how long a node with persistence waits for a peer it
// has never heard before it may become master alone.
const StartupGrace = 2 * time.Second

// WantedHold is a hold the policy wants in force.
type WantedHold struct {
	Kind HoldKind
	// Reason is what the election records and status shows.
	Reason string
}

// HoldFacts is what the hold policy looks at, gathered by the node at one
// instant.
type HoldFacts struct {
	// Started is when the node started running.
	Started time.Time
	// FirstRoundPending names the clusters whose first round of health
	// checks has not completed.
	FirstRoundPending []string
	// Health is every health-checked cluster as last checked.
	Health []ClusterHealth
	// Witness is failover.witness ("" for none) and WitnessAnswer when it
	// last answered (zero: never, or not since it was configured).
	Witness       string
	WitnessAnswer time.Time
	// Node is this node's name; NameClashFrom is the box last heard
	// advertising under it, at NameClashAt (zero: never).
	Node          string
	NameClashFrom string
	NameClashAt   time.Time
	// Peer is the peer's last advert; zero when none was heard.
	Peer PeerAdvert
	// ConfigDiff names the config sections in which the peer's last
	// advert differs from this node's config; nil when they match.
	ConfigDiff []string
	// Persistence is set when the node replicates sticky tables or flows
	// to the peer; BulkDone once the peer's whole table has arrived.
	Persistence bool
	BulkDone    bool
}

// PeerAdvert is the peer as its last advert showed it.
type PeerAdvert struct {
	Node     string
	Priority uint8
	// State is the state as advertised.
	State string
	// At is when the advert arrived; zero when none has.
	At time.Time
}

// ClusterHealth is one health-checked cluster.
type ClusterHealth struct {
	// Settle bounds how long after a fault the verdicts may take to catch
	// up: (rise+2) check intervals.
	Settle  time.Duration
	Servers []ServerHealth
}

// ServerHealth is one server's verdict.
type ServerHealth struct {
	// CheckedAt is when its last check completed; zero if never.
	CheckedAt time.Time
	Healthy   bool
}

// HoldMemory is what the policy carries from one evaluation to the next:
// whether the witness was lost, and when it answered again. The zero
// value is the start.
type HoldMemory struct {
	witnessLost bool
	witnessBack time.Time
}

// Holds says what keeps this node from becoming master at now, the way
// pfsync holds CARP down: it stays BACKUP (and does not preempt)
//   - until one round of health checks has completed, so it never takes
//     the VIPs with an unknown pool;
//   - after a FAULT, until its health verdicts have caught up (the
//     election sets HoldAfterFault itself, this lifts it);
//   - while failover.witness does not answer, so a box cut off from the
//     network does not claim the VIPs (and, once it answers again, until
//     the health checks that failed meanwhile have caught up);
//   - while another box advertises under this node's name;
//   - while a live master's config differs from this node's (drift);
//   - while a live master's sticky table has not fully arrived, so sticky
//     clients keep their server across the hand-over;
//   - for a short start-up grace when persistence is on and the peer has
//     never been heard.
//
// A silent (dead) master lifts the drift and sync holds at once: a
// partial table or an odd config is better than no master. It returns the
// holds in that order and the memory for the next call.
func (c Config) Holds(m Machine, f HoldFacts, mem HoldMemory, now time.Time) ([]WantedHold, HoldMemory) {
	var h []WantedHold
	want := func(k HoldKind, format string, args ...any) {
		h = append(h, WantedHold{Kind: k, Reason: fmt.Sprintf(format, args...)})
	}
	for _, name := range f.FirstRoundPending {
		want(HoldFirstHealth, "waiting for the first round of health checks (cluster %s)", name)
	}
	if slices.Contains(m.Holds, HoldAfterFault) && HealthSettling(f.Health, m.Since, now) {
		want(HoldFaultSettling, "%s", HoldAfterFault)
	}
	if f.Witness != "" {
		// A backup must be held before its master-down timer (3
		// intervals plus the skew) runs out; a master hands its VIPs
		// over when held, so it waits twice as long, and a late answer
		// on a busy box does not move them.
		window := 2 * c.AdvertInterval
		if m.State == Master {
			window *= 2
		}
		lost := f.WitnessAnswer.IsZero() || now.Sub(f.WitnessAnswer) > window
		if lost {
			want(HoldWitnessLost, "witness %s does not answer: this box may be cut off", f.Witness)
		}
		// Cut off, the box's health checks failed too: once the witness
		// answers again, wait for them as after a FAULT.
		if mem.witnessLost && !lost {
			mem.witnessBack = now
		}
		mem.witnessLost = lost
		if !lost && !mem.witnessBack.IsZero() && HealthSettling(f.Health, mem.witnessBack, now) {
			want(HoldWitnessSettling, "waiting for health checks after the witness answered again")
		}
	}
	if NameClash(f.NameClashAt, now) {
		want(HoldNameClash, "node name %q is also used by the box at %s: give each box its own node.name", f.Node, f.NameClashFrom)
	}
	p := f.Peer
	alive := !p.At.IsZero() && now.Sub(p.At) < c.MasterDown()
	liveMaster := alive && p.State == Master.String() && p.Priority != 0
	if liveMaster && f.ConfigDiff != nil {
		want(HoldDrift, "config differs from master %s's (%s): will not preempt", p.Node, strings.Join(f.ConfigDiff, ", "))
	}
	if !f.Persistence {
		return h, mem
	}
	if liveMaster && !f.BulkDone {
		want(HoldSync, "waiting for persistence sync from %s", p.Node)
	}
	if p.At.IsZero() && now.Sub(f.Started) < StartupGrace {
		want(HoldStartupGrace, "start-up grace: waiting up to %s for the peer", StartupGrace)
	}
	return h, mem
}

// NameClash reports whether an advert under this node's own name from
// another box, last heard at (zero: never), still holds the node at now.
func NameClash(at, now time.Time) bool {
	return !at.IsZero() && now.Sub(at) <= NameClashFor
}

// HealthSettling reports whether the health verdicts of a box that left
// FAULT (or got its witness back) at since may still be catching up: its
// checks failed while its cable was out (and the first ones after it may
// fail while neighbours resolve), and preempting before they pass again
// would send clients to a pool it believes dead. A cluster settles when
// every server has been checked since and is healthy, or after its Settle
// at most, so a server that is really down delays the preempt only that
// long.
func HealthSettling(health []ClusterHealth, since, now time.Time) bool {
	for _, c := range health {
		if now.Sub(since) > c.Settle {
			continue
		}
		for _, s := range c.Servers {
			if s.CheckedAt.IsZero() || s.CheckedAt.Before(since) || !s.Healthy {
				return true
			}
		}
	}
	return false
}

// HoldChanges are the Hold events that take the election's holds (held,
// Machine.Holds) to want: the new holds first, so that one hold giving way
// to another (the witness answers, the health checks must catch up) never
// leaves an instant without any, in which the node would preempt; then
// the releases. Posting them is idempotent.
func HoldChanges(held []string, want []WantedHold) []Hold {
	var out []Hold
	for _, w := range want {
		if !slices.Contains(held, w.Reason) && !slices.ContainsFunc(out, func(h Hold) bool { return h.Reason == w.Reason }) {
			out = append(out, Hold{Reason: w.Reason, On: true, HandOver: w.Kind.HandsOver()})
		}
	}
	for _, r := range held {
		if !slices.ContainsFunc(want, func(w WantedHold) bool { return w.Reason == r }) {
			out = append(out, Hold{Reason: r})
		}
	}
	return out
}
