package node

import (
	"time"

	"github.com/tandem-lb/tandem/failover"
)

// holdEvery is how often the holds are re-evaluated (they are also
// re-evaluated before every advert is handed to the election).
const holdEvery = 20 * time.Millisecond

// holdFacts gathers what the hold policy (failover.Config.Holds) looks at.
func (n *Node) holdFacts() failover.HoldFacts {
	g := n.gen()
	f := g.healthFacts()
	f.Started = n.started
	n.mu.Lock()
	last := n.lastAdvert
	n.mu.Unlock()
	a := last.Advert
	f.Peer = failover.PeerAdvert{Node: a.Node, Priority: a.Priority, State: a.State, At: last.At}
	f.ConfigDiff = configDiff(g.advertHash, a.ConfigHash)
	clash := n.peer.NameClash()
	f.Node, f.NameClashFrom, f.NameClashAt = g.cfg.Node.Name, clash.From, clash.At
	if w := g.cfg.Failover.Witness; w != "" {
		f.Witness, f.WitnessAnswer = w, n.witness.LastAnswer(w)
	}
	if n.repl != nil {
		f.Persistence, f.BulkDone = true, n.repl.Status().BulkDone
	}
	return f
}

// healthFacts are the clusters' health checks as the hold policy sees
// them: which have not completed a first round, and every server's last
// verdict.
func (g *generation) healthFacts() failover.HoldFacts {
	var f failover.HoldFacts
	for _, c := range g.clusters {
		if c.mon == nil {
			continue
		}
		select {
		case <-c.mon.RoundDone():
		default:
			f.FirstRoundPending = append(f.FirstRoundPending, c.cfg.Name)
		}
		hc := c.cfg.HealthCheck
		ch := failover.ClusterHealth{Settle: time.Duration(hc.Rise+2) * hc.Interval}
		last := c.mon.Last()
		for _, s := range c.pool.Servers() {
			ch.Servers = append(ch.Servers, failover.ServerHealth{CheckedAt: last[s.Name].At, Healthy: s.Healthy()})
		}
		f.Health = append(f.Health, ch)
	}
	return f
}

// refreshHolds posts the differences between the election's holds and
// the ones the policy wants. Posting is idempotent, and the election
// processes events in order, so a hold posted here is in force before
// any advert posted after it.
func (n *Node) refreshHolds() {
	n.noteSyncState()
	m := n.loop.Snapshot()
	f := n.holdFacts()
	n.mu.Lock()
	want, mem := n.loop.Config().Holds(m, f, n.holdMem, time.Now())
	n.holdMem = mem
	n.mu.Unlock()
	for _, h := range failover.HoldChanges(m.Holds, want) {
		n.loop.Post(h)
		if h.On {
			n.log.Info("holding in BACKUP", "reason", h.Reason)
			n.events.add("hold", "holding in BACKUP: %s", h.Reason)
		} else {
			n.log.Info("hold released", "reason", h.Reason)
			n.events.add("hold", "released: %s", h.Reason)
		}
	}
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
