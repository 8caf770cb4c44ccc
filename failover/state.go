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
}

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
	// was stopping; the VIPs are kept one more advert interval so its
	// gratuitous ARPs reach every client first.
	HandedTo string
	// Demoting marks a leave that ends in BACKUP (a switchover) rather
	// than INIT (a stop).
	Demoting bool
	// Down lists the tracked interfaces that have no carrier.
	Down []string
	// NoPreempt is set by a switchover: the node does not take the VIPs
	// back from a lower-priority master until it has been master again
	// (it still takes over a silent or leaving master).
	NoPreempt bool
	// Holds lists reasons this node must not become master (for example
	// "waiting for persistence sync"); empty means free to take over.
	Holds []string
	// Peer is what the last advert told about the other node.
	Peer PeerView
}

// PeerView is the last advert heard from the peer.
type PeerView struct {
	Node     string
	Priority uint8
	State    State
	// LastHeard is when any advert arrived; LastMaster when one from a
	// master (or a leaving node) did.
	LastHeard  time.Time
	LastMaster time.Time
}

// Deadline is the next instant at which a Tick may change something; zero
// when nothing is scheduled.
func (m Machine) Deadline() time.Time {
	var d time.Time
	for _, t := range []time.Time{m.MasterDownAt, m.PreemptAt, m.NextAdvertAt, m.LeaveBy} {
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
}

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
