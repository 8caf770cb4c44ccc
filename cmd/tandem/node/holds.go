package node

import (
	"context"
	"fmt"
	"time"

	"github.com/tandem-lb/tandem/failover"
)

// startupGrace is how long a node with persistence waits for a peer it
// has never heard before it may become master alone.
const startupGrace = 2 * time.Second

// holdEvery is how often the holds are re-evaluated.
const holdEvery = 20 * time.Millisecond

// desiredHolds says what keeps this node from becoming master now, the
// way pfsync holds CARP down: it stays BACKUP (and does not preempt)
//   - until one round of health checks has completed, so it never takes
//     the VIPs with an unknown pool;
//   - while a live master peer's sticky table has not fully arrived, so
//     sticky clients keep their server across the hand-over;
//   - for a short start-up grace when persistence is on and the peer has
//     never been heard.
//
// A silent (dead) master lifts the sync hold at once: a partial table is
// better than no master.
func (n *Node) desiredHolds(now time.Time) map[string]bool {
	h := map[string]bool{}
	for _, c := range n.clusters {
		if c.mon == nil {
			continue
		}
		select {
		case <-c.mon.RoundDone():
		default:
			h[fmt.Sprintf("waiting for the first round of health checks (cluster %s)", c.cfg.Name)] = true
		}
	}
	if reason := n.healthSettling(now); reason != "" {
		h[reason] = true
	}
	if n.repl == nil {
		return h
	}
	m := n.loop.Snapshot()
	heard := !m.Peer.LastHeard.IsZero()
	alive := heard && now.Sub(m.Peer.LastHeard) < n.loop.Config().MasterDown()
	if alive && m.Peer.State == failover.Master && m.Peer.Priority != 0 && !n.repl.Status().BulkDone {
		h[fmt.Sprintf("waiting for persistence sync from %s", m.Peer.Node)] = true
	}
	if !heard && now.Sub(n.started) < startupGrace {
		h[fmt.Sprintf("start-up grace: waiting up to %s for the peer", startupGrace)] = true
	}
	return h
}

// updateHolds posts the changes between the current and desired holds.
func (n *Node) updateHolds(current map[string]bool) map[string]bool {
	want := n.desiredHolds(time.Now())
	for r := range current {
		if !want[r] {
			n.loop.Post(failover.Hold{Reason: r, On: false})
			n.log.Info("hold released", "reason", r)
		}
	}
	for r := range want {
		if !current[r] {
			n.loop.Post(failover.Hold{Reason: r, On: true})
			n.log.Info("holding in BACKUP", "reason", r)
		}
	}
	return want
}

// manageHolds keeps the election's holds up to date.
func (n *Node) manageHolds(ctx context.Context, current map[string]bool) {
	t := time.NewTicker(holdEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			current = n.updateHolds(current)
		}
	}
}

// healthSettling names a hold while the health verdicts of a box that has
// just come back from FAULT are still catching up: its checks failed
// while its cable was out, and preempting before they pass again would
// send clients to a pool it believes dead. It holds until every server
// has been checked since the fault ended and its verdict agrees with that
// check (rise satisfied), for at most (rise+2) check intervals.
func (n *Node) healthSettling(now time.Time) string {
	n.mu.Lock()
	since := n.faultEnded
	n.mu.Unlock()
	if since.IsZero() {
		return ""
	}
	for _, c := range n.clusters {
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
			if !ok || r.At.Before(since) || r.OK != s.Healthy() {
				return fmt.Sprintf("waiting for health checks after the fault (cluster %s)", c.cfg.Name)
			}
		}
	}
	return ""
}
