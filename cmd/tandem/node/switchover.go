package node

import (
	"fmt"

	"github.com/tandem-lb/tandem/failover"
)

// Switchover hands the VIPs to the peer for maintenance (api.Switcher).
// It refuses unless this node is MASTER and the peer is ready to take
// over: alive, BACKUP, on the same config and, with persistence, holding
// this node's whole sticky table. The hand-over itself runs in the
// election: priority-0 adverts, the peer claims the VIPs, this node
// releases them one advert interval later and stays BACKUP without
// preempting back.
func (n *Node) Switchover() error {
	m := n.loop.Snapshot()
	if m.State != failover.Master {
		return fmt.Errorf("this node is %s, not MASTER: run switchover on the master", m.State)
	}
	st := n.Status()
	if len(st.Peers) == 0 || !st.Peers[0].Alive {
		return fmt.Errorf("the peer is not alive: nobody to hand over to")
	}
	p := st.Peers[0]
	switch {
	case p.State != failover.Backup.String():
		return fmt.Errorf("peer %s is %s, not BACKUP", p.Name, p.State)
	case !p.ConfigMatch:
		return fmt.Errorf("peer %s runs another config (%s, this node %s)", p.Name, p.ConfigHash, st.ConfigHash)
	case st.Persistence.Enabled && st.Persistence.State != "IN SYNC":
		return fmt.Errorf("persistence is %s with %s (%s): the peer would lose sticky clients",
			st.Persistence.State, p.Name, st.Persistence.Reason)
	}
	if !n.loop.Post(failover.Demote{}) {
		return fmt.Errorf("election busy, try again")
	}
	n.log.Info("switchover requested", "peer", p.Name)
	n.events.add("switchover", "requested by the operator: handing the VIPs to %s", p.Name)
	return nil
}
