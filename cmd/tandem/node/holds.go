package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tandem-lb/tandem/failover"
)

// witnessHoldPrefix starts the witness's hold, the one hold that makes a
// master hand its VIPs over (the others only keep a backup back).
const witnessHoldPrefix = "witness "

// startupGrace is how long a node with persistence waits for a peer it
// has never heard before it may become master alone.
const startupGrace = 2 * time.Second

// holdEvery is how often the holds are re-evaluated (they are also
// re-evaluated before every advert is handed to the election).
const holdEvery = 20 * time.Millisecond

// peerNow is the peer as its last advert showed it.
type peerNow struct {
	node       string
	priority   uint8
	state      string
	configHash string
	heard      bool
	alive      bool
}

func (n *Node) peerNow(now time.Time) peerNow {
	n.mu.Lock()
	last := n.lastAdvert
	n.mu.Unlock()
	a := last.Advert
	p := peerNow{node: a.Node, priority: a.Priority, state: a.State, configHash: a.ConfigHash, heard: !last.At.IsZero()}
	p.alive = p.heard && now.Sub(last.At) < n.loop.Config().MasterDown()
	return p
}

// desiredHolds says what keeps this node from becoming master now, the
// way pfsync holds CARP down: it stays BACKUP (and does not preempt)
//   - until one round of health checks has completed, so it never takes
//     the VIPs with an unknown pool;
//   - after a FAULT, until its health verdicts have caught up (the
//     election sets failover.HoldAfterFault itself, this lifts it);
//   - while a live master's config differs from this node's (drift);
//   - while a live master's sticky table has not fully arrived, so sticky
//     clients keep their server across the hand-over;
//   - for a short start-up grace when persistence is on and the peer has
//     never been heard;
//   - while failover.witness does not answer, so a box cut off from the
//     network does not claim the VIPs.
//
// A silent (dead) master lifts the drift and sync holds at once: a
// partial table or an odd config is better than no master.
func (n *Node) desiredHolds(now time.Time, m failover.Machine) map[string]bool {
	h := map[string]bool{}
	for _, c := range n.gen().clusters {
		if c.mon == nil {
			continue
		}
		select {
		case <-c.mon.RoundDone():
		default:
			h[fmt.Sprintf("waiting for the first round of health checks (cluster %s)", c.cfg.Name)] = true
		}
	}
	if slices.Contains(m.Holds, failover.HoldAfterFault) && n.healthSettling(now, m.Since) {
		h[failover.HoldAfterFault] = true
	}
	if w := n.gen().cfg.Failover.Witness; w != "" {
		// A backup must be held before its master-down timer (3
		// intervals plus the skew) runs out; a master hands its VIPs
		// over when held, so it waits twice as long, and a late answer
		// on a busy box does not move them.
		window := 2 * n.gen().cfg.Failover.AdvertInterval
		if m.State == failover.Master {
			window *= 2
		}
		lost := n.witness.lost(w, now, window)
		if lost {
			h[fmt.Sprintf(witnessHoldPrefix+"%s does not answer: this box may be cut off", w)] = true
		}
		// Cut off, the box's health checks failed too: once the witness
		// answers again, wait for them as after a FAULT.
		n.mu.Lock()
		if n.witnessLost && !lost {
			n.witnessBack = now
		}
		n.witnessLost = lost
		back := n.witnessBack
		n.mu.Unlock()
		if !lost && !back.IsZero() && n.healthSettling(now, back) {
			h["waiting for health checks after the witness answered again"] = true
		}
	}
	if r := nameClashHold(n.gen().cfg.Node.Name, n.peer.NameClash(), now); r != "" {
		h[r] = true
	}
	p := n.peerNow(now)
	liveMaster := p.alive && p.state == failover.Master.String() && p.priority != 0
	if liveMaster {
		if diff := configDiff(n.gen().advertHash, p.configHash); diff != nil {
			h[fmt.Sprintf("config differs from master %s's (%s): will not preempt", p.node, strings.Join(diff, ", "))] = true
		}
	}
	if n.repl == nil {
		return h
	}
	if liveMaster && !n.repl.Status().BulkDone {
		h[fmt.Sprintf("waiting for persistence sync from %s", p.node)] = true
	}
	if !p.heard && now.Sub(n.started) < startupGrace {
		h[fmt.Sprintf("start-up grace: waiting up to %s for the peer", startupGrace)] = true
	}
	return h
}

// refreshHolds posts the differences between the election's holds and
// the desired ones. Posting is idempotent, and the election processes
// events in order, so a hold posted here is in force before any advert
// posted after it.
func (n *Node) refreshHolds() {
	n.noteSyncState()
	m := n.loop.Snapshot()
	want := n.desiredHolds(time.Now(), m)
	// New holds first: one hold giving way to another (the witness
	// answers, the health checks must catch up) must never leave an
	// instant without any, in which the node would preempt.
	for r := range want {
		if !slices.Contains(m.Holds, r) {
			n.loop.Post(failover.Hold{Reason: r, On: true, HandOver: strings.HasPrefix(r, witnessHoldPrefix)})
			n.log.Info("holding in BACKUP", "reason", r)
			n.events.add("hold", "holding in BACKUP: %s", r)
		}
	}
	for _, r := range m.Holds {
		if !want[r] {
			n.loop.Post(failover.Hold{Reason: r, On: false})
			n.log.Info("hold released", "reason", r)
			n.events.add("hold", "released: %s", r)
		}
	}
}

// manageHolds keeps the election's holds up to date.
func (n *Node) manageHolds(ctx context.Context) {
	every(ctx, holdEvery, n.refreshHolds)
}

// healthSettling reports whether the health verdicts of a box that left
// FAULT at since may still be catching up: its checks failed while its
// cable was out (and the first ones after it may fail while neighbours
// resolve), and preempting before they pass again would send clients to a
// pool it believes dead. It settles when every server has been checked
// since and is healthy, or after (rise+2) check intervals at most, so a
// server that is really down delays the preempt only that long.
func (n *Node) healthSettling(now, since time.Time) bool {
	for _, c := range n.gen().clusters {
		if c.mon == nil {
			continue
		}
		hc := c.cfg.HealthCheck
		if now.Sub(since) > time.Duration(hc.Rise+2)*hc.Interval {
			continue
		}
		last := c.mon.Last()
		for _, s := range c.pool.Servers() {
			r, ok := last[s.Name]
			if !ok || r.At.Before(since) || !s.Healthy() {
				return true
			}
		}
	}
	return false
}

// noteSyncState records changes of the persistence sync state.
func (n *Node) noteSyncState() {
	if n.repl == nil {
		return
	}
	st := n.repl.Status()
	n.mu.Lock()
	changed := st.State != n.lastSync
	n.lastSync = st.State
	n.mu.Unlock()
	if changed {
		msg := st.State
		if st.Reason != "" {
			msg += " (" + st.Reason + ")"
		}
		n.events.add("sync", "persistence %s", msg)
	}
}
