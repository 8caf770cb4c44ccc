// Package failover decides which box of the pair holds the virtual IPs.
//
// The decision is a pure function, Config.Step, of the election state, one
// event and the current time; it returns the next state and the actions to
// perform (claim or release the VIPs, send an advert, record a transition).
// Loop feeds it events and timer ticks from an injected clock and hands the
// actions to an Effector, so the rules are table-tested without root,
// sockets or sleeps.
package failover

import (
	"fmt"
	"time"
)

// State is the role of a node in the pair, as in VRRP.
type State uint8

// The states of CONTRACT.md.
const (
	Init State = iota
	Backup
	Master
	Fault
)

var stateNames = [...]string{"INIT", "BACKUP", "MASTER", "FAULT"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// ParseState turns a state name from an advert back into a State.
func ParseState(name string) (State, bool) {
	for i, n := range stateNames {
		if n == name {
			return State(i), true
		}
	}
	return Init, false
}

// Config is what the election needs to know about this node.
type Config struct {
	// Node is this node's name; it breaks ties between equal priorities.
	Node string
	// Priority is 1..254; the higher wins.
	Priority uint8
	// Preempt lets this node take the VIPs from a lower-priority master.
	Preempt bool
	// PreemptDelay is how long a lower-priority master is tolerated.
	PreemptDelay time.Duration
	// AdvertInterval is the heartbeat period.
	AdvertInterval time.Duration
	// Track lists the interfaces whose carrier loss means FAULT.
	Track []string
	// HoldAfterFault makes a node that leaves FAULT hold itself in
	// BACKUP (HoldAfterFault hold) until the node lifts the hold, for
	// instance once its health checks have caught up.
	HoldAfterFault bool
	// LinkHoldDown damps a flapping link: after a tracked link's carrier
	// returns, the node does not preempt a master until the link has been
	// up this long, doubled for each further carrier loss in the last
	// FlapWindow (at most MaxHoldDownFactor times). It never stops the
	// node from taking over a silent or leaving master. 0 disables it.
	LinkHoldDown time.Duration
	// Overlap is make-before-break: a master that hands its VIPs to the
	// peer (preempted, switchover, stop) keeps them, and keeps serving,
	// this long after the peer announced itself master, so a client whose
	// packet left before the new master's gratuitous ARP reached it is
	// still answered. 0 means one AdvertInterval; see DefaultOverlap.
	Overlap time.Duration
}

// DefaultOverlap is the make-before-break overlap the node uses: three
// adverts (the peer's gratuitous ARPs and a couple of retransmissions),
// at least 100 ms and at most 1 s.
func DefaultOverlap(advert time.Duration) time.Duration {
	return min(max(3*advert, 100*time.Millisecond), time.Second)
}

// overlap is Overlap with its default.
func (c Config) overlap() time.Duration {
	if c.Overlap > 0 {
		return c.Overlap
	}
	return c.AdvertInterval
}

// Split-brain and flap-damping constants.
const (
	// AloneAnnounceEvery is how often a master whose peer is silent
	// announces its VIPs again, so a box cut off from the heartbeats but
	// on the same LAN sees them held (see Rival).
	AloneAnnounceEvery = time.Second
	// RivalHold is how long a backup whose peer is silent holds back
	// from taking over after another box announced one of the VIPs.
	RivalHold = 3 * AloneAnnounceEvery
	// FlapWindow is how far back carrier losses count towards the
	// hold-down.
	FlapWindow = 30 * time.Second
	// MaxHoldDownFactor caps the hold-down at this many LinkHoldDowns.
	MaxHoldDownFactor = 8
)

// HoldDown is the preempt hold-down after a link came back, given the
// carrier losses counted in the flap window (at least one).
func (c Config) HoldDown(losses int) time.Duration {
	if c.LinkHoldDown <= 0 || losses <= 0 {
		return 0
	}
	f := 1
	for i := 1; i < losses && f < MaxHoldDownFactor; i++ {
		f *= 2
	}
	return time.Duration(f) * c.LinkHoldDown
}

// silenceAfter is how long without an advert makes the peer silent for
// the split-brain defence: one and a half advert intervals, well before a
// backup's master-down time, so a master announces before a cut-off
// backup would claim.
func (c Config) silenceAfter() time.Duration { return c.AdvertInterval * 3 / 2 }

// HoldAfterFault is the hold a node leaving FAULT starts with when
// Config.HoldAfterFault is set.
const HoldAfterFault = "waiting for health checks after the fault"

// Skew is VRRP's skew time: (256 − priority) × advert_interval / 256, so
// the higher-priority backup takes over first.
func (c Config) Skew() time.Duration {
	return time.Duration(256-int(c.Priority)) * c.AdvertInterval / 256
}

// MasterDown is how long a backup waits for a silent master: three adverts
// plus the skew.
func (c Config) MasterDown() time.Duration {
	return 3*c.AdvertInterval + c.Skew()
}

// beats reports whether a node (prio, name) wins the election against
// (otherPrio, otherName): the higher priority wins, and between equal
// priorities the lexically smaller name wins, so every node reaches the
// same answer.
func beats(prio uint8, name string, otherPrio uint8, otherName string) bool {
	if prio != otherPrio {
		return prio > otherPrio
	}
	return name < otherName
}

// Machine is the election state of one node. It is a plain value: Step
// returns a new one.
type Machine struct {
	State State
	// Since is when State was entered.
	Since time.Time
	// MasterDownAt is when a backup declares a silent master down.
	MasterDownAt time.Time
	// PreemptAt, when set, is when a backup takes over from a
	// lower-priority master.
	PreemptAt time.Time
	// NextAdvertAt is when the next periodic advert is due.
	NextAdvertAt time.Time
	// LeaveBy, when set, is a stopping master's deadline: it keeps the
	// VIPs, repeating priority-0 adverts, until the peer announces itself
	// master or LeaveBy passes, so no probe meets a box without the VIP.
	LeaveBy time.Time
	// HandedTo is the peer that announced itself master while this node
	// was stopping, or that preempted it; the VIPs are kept for the
	// overlap (Config.Overlap) so its gratuitous ARPs reach every client
	// first.
	HandedTo string
	// Yield, when set, is why this master, preempted by HandedTo, becomes
	// BACKUP once the overlap ends.
	Yield string
	// Demoting marks a leave that ends in BACKUP (a switchover) rather
	// than INIT (a stop).
	Demoting bool
	// HandOver, when set, is why a held master is handing its VIPs to a
	// peer that is not held (see Advert.Held); unlike a switchover it
	// preempts back once free.
	HandOver string
	// handOverRetryAt keeps an abandoned hand-over from being retried at
	// once.
	handOverRetryAt time.Time
	// Down lists the tracked interfaces that have no carrier.
	Down []string
	// NoPreempt is set by a switchover: the node does not take the VIPs
	// back from a lower-priority master until it has been master again
	// (it still takes over a silent or leaving master).
	NoPreempt bool
	// Holds lists reasons this node must not become master (for example
	// "waiting for persistence sync"); empty means free to take over.
	Holds []string
	// HandOverHolds are the Holds posted with HandOver: a master with
	// one hands its VIPs over.
	HandOverHolds []string
	// Peer is what the last advert told about the other node.
	Peer PeerView

	// NextAnnounceAt, while master, is when the VIPs are announced again
	// if the peer stays silent (every AloneAnnounceEvery).
	NextAnnounceAt time.Time
	// AloneSince is when a master started announcing alone; zero while
	// the peer is heard.
	AloneSince time.Time
	// RivalUntil, while backup with a silent peer, holds back the
	// take-over: another box (Rival, a hardware address) announced one of
	// the VIPs, so it is alive and serving and only the heartbeats are
	// lost.
	RivalUntil time.Time
	Rival      string
	// rivalAnnouncedAt rate-limits a master's answers to a rival.
	rivalAnnouncedAt time.Time
	// Losses are the recent carrier losses of tracked links (within
	// FlapWindow), for the hold-down.
	Losses []time.Time
	// StableAt, when set, is the earliest instant this node may preempt:
	// its link came back and must stay up until then.
	StableAt time.Time
}

// PeerView is the last advert heard from the peer.
type PeerView struct {
	Node     string
	Priority uint8
	State    State
	// Held is the peer's Advert.Held.
	Held bool
	// LastHeard is when any advert arrived; LastMaster when one from a
	// master (or a leaving node) did.
	LastHeard  time.Time
	LastMaster time.Time
}

// Deadline is the next instant at which a Tick may change something; zero
// when nothing is scheduled.
func (m Machine) Deadline() time.Time {
	var d time.Time
	ts := []time.Time{m.NextAdvertAt, m.LeaveBy, m.NextAnnounceAt}
	if len(m.Holds) == 0 {
		// A held node takes over only when a Hold event releases it, and
		// a rival postpones the master-down: a deadline that cannot fire
		// would spin the loop.
		down := m.MasterDownAt
		if m.RivalUntil.After(down) && !down.IsZero() {
			down = m.RivalUntil
		}
		ts = append(ts, down, m.PreemptAt)
	}
	for _, t := range ts {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	return d
}

// Event is something that happened to the node.
type Event interface{ event() }

// Start begins the election (INIT → BACKUP, or FAULT when a tracked link
// is already down).
type Start struct{}

// Tick is the passing of time; the loop sends one at Machine.Deadline.
type Tick struct{}

// Advert is a heartbeat from the peer.
type Advert struct {
	Node     string
	Priority uint8
	State    State
	// Held says the peer must not become master now (it has holds,
	// such as a witness that does not answer). A master that is held
	// itself hands its VIPs over to a peer that is not.
	Held bool
}

// Link is a carrier change on an interface.
type Link struct {
	Iface string
	Up    bool
}

// Stop is a graceful shutdown: a master tells its peer to take over at
// once and releases the VIPs when the peer has (or after a deadline).
// The node may exit when the state is INIT or FAULT.
type Stop struct{}

// Hold forbids (On) or allows again (!On) becoming master for a reason,
// for example while persistence state is still syncing.
type Hold struct {
	Reason string
	On     bool
	// HandOver marks a hold that impairs a master too (its witness does
	// not answer): a master with such a hold hands its VIPs over to a
	// free peer. Other holds (a reloaded cluster's first health round,
	// say) only keep a backup from taking over.
	HandOver bool
}

// Rival is another box announcing one of this node's VIPs: a gratuitous
// ARP for it from a hardware address (MAC) that is not this node's own
// (OwnMAC). Only the peer's own address (PeerMAC, learned from its
// authenticated adverts) can show that the peer still holds the VIP:
// while its adverts are heard they decide and the Rival is ignored; while
// the peer is silent a master applies the election's tie-break (against
// the last advert heard) and the loser steps down, and a backup holds
// back from taking over (RivalHold), so a cut heartbeat path on a shared
// LAN does not leave two masters. Any other address is an address
// conflict (a misconfigured box, or someone spoofing): never a reason to
// leave the VIP unserved; a master announces the VIP again to win the
// LAN's caches back.
type Rival struct {
	VIP     string
	MAC     string
	OwnMAC  string
	PeerMAC string // "" while the peer's address is unknown
}

func (Rival) event() {}

// Demote is a planned hand-over (tandem switchover): a master hands its
// VIPs to the peer as on Stop, then stays BACKUP without preempting back.
type Demote struct{}

func (Demote) event() {}

func (Start) event()  {}
func (Tick) event()   {}
func (Advert) event() {}
func (Link) event()   {}
func (Stop) event()   {}
func (Hold) event()   {}

// Action is a side effect the loop performs after a Step.
type Action interface{ action() }

// ClaimVIPs adds the VIPs and announces them.
type ClaimVIPs struct{}

// ReleaseVIPs removes the VIPs.
type ReleaseVIPs struct{}

// Announce re-sends gratuitous ARPs for VIPs already held, after a
// split brain was resolved in this node's favour or the master it
// preempted stepped down; Reason says which.
type Announce struct {
	Reason string
	// Refresh marks a repeat of an earlier announcement (a master alone):
	// one round is enough and it is not worth a log line.
	Refresh bool
}

// SendAdvert sends a heartbeat with this node's state; Priority 0 tells
// the peer to take over at once.
type SendAdvert struct {
	Priority uint8
	// State is the state to advertise: the one the node was in when it
	// decided to send (a stopping master says MASTER with priority 0).
	State State
}

// Transition records a change of state with a human reason.
type Transition struct {
	At     time.Time
	From   State
	To     State
	Reason string
}

func (ClaimVIPs) action()   {}
func (ReleaseVIPs) action() {}
func (Announce) action()    {}
func (SendAdvert) action()  {}
func (Transition) action()  {}
