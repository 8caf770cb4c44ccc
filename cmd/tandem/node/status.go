package node

import (
	"fmt"
	"slices"
	"time"

	"github.com/tandem-lb/tandem/failover"
	"github.com/tandem-lb/tandem/pkg/api"
)

// Status reports what this node knows of the pair (api.StatusSource).
func (n *Node) Status() api.Status {
	now := time.Now()
	m := n.loop.Snapshot()
	n.mu.Lock()
	transitions := slices.Clone(n.transitions)
	total := n.transitionsTotal
	last := n.lastAdvert
	n.mu.Unlock()

	st := api.Status{
		Node:             n.gen().cfg.Node.Name,
		State:            m.State.String(),
		Priority:         n.gen().cfg.Failover.Priority,
		ConfigHash:       n.gen().hash,
		StateSince:       m.Since,
		Holds:            statusHolds(m, now),
		Down:             m.Down,
		Transitions:      transitions,
		Version:          n.version,
		Now:              now,
		Clusters:         n.gen().clusterStatus(n.nat),
		TransitionsTotal: total,
		Persistence:      n.gen().persistenceStatus(n.repl, n.nat),
		Peers:            []api.Peer{},
	}
	if !m.Since.IsZero() {
		st.StateAgeMs = now.Sub(m.Since).Milliseconds()
	}
	if st.Transitions == nil {
		st.Transitions = []api.Transition{}
	}
	rs := n.rivals.Stats()
	st.SplitBrain = api.SplitBrain{ARPRead: rs.Read, ARPMalformed: rs.Malformed, Rivals: rs.Sightings}
	n.feed.conflicts.status(&st.SplitBrain)
	if w := n.gen().cfg.Failover.Witness; w != "" {
		sent, answered := n.witness.Counts()
		answer := n.witness.LastAnswer(w)
		ws := &api.Witness{Address: w, Sent: sent, Answered: answered, LastAnswerMs: -1,
			Reachable: !answer.IsZero() && now.Sub(answer) <= 2*n.gen().cfg.Failover.AdvertInterval}
		if !answer.IsZero() {
			ws.LastAnswerMs = now.Sub(answer).Milliseconds()
		}
		st.SplitBrain.Witness = ws
	}
	ps := n.peer.Stats()
	st.Adverts = api.Adverts{Sent: ps.AdvertsSent, Received: ps.AdvertsReceived, Dropped: ps.Dropped}

	// A peer counts as alive twice the master-down interval after its
	// last advert, so one late advert does not flip the display.
	aliveFor := 2 * n.loop.Config().MasterDown()
	members := n.peer.Members()
	for _, addr := range n.gen().cfg.Cluster.Peers {
		p := api.Peer{Address: addr, State: "UNKNOWN", LastHeardMs: -1}
		if last.From == addr || (last.Advert.Node != "" && len(n.gen().cfg.Cluster.Peers) == 1) {
			a := last.Advert
			p.Name = a.Node
			p.Priority = int(a.Priority)
			p.ConfigHash, _ = splitAdvertHash(a.ConfigHash)
			p.ConfigDiff = configDiff(n.gen().advertHash, a.ConfigHash)
			p.ConfigMatch = p.ConfigDiff == nil
			p.LastState = a.State
			p.LastHeardMs = now.Sub(last.At).Milliseconds()
			p.StateAgeMs = (a.StateAge + now.Sub(last.At)).Milliseconds()
			// A peer that stopped (priority 0) or went quiet is not
			// shown with a state it may no longer have.
			if now.Sub(last.At) < aliveFor && a.Priority != 0 {
				p.Alive = true
				p.State = a.State
			}
		}
		for _, mem := range members {
			if mem.Addr == addr || (p.Name != "" && mem.Name == p.Name) {
				p.Member = mem.State
				if p.Name == "" {
					p.Name = mem.Name
				}
			}
		}
		nameClashPeer(&p, st.Node, n.peer.NameClash(), now)
		st.Peers = append(st.Peers, p)
	}

	held := map[string]bool{}
	for _, h := range n.vips.Held() {
		held[h.Prefix.String()] = h.Present
	}
	for _, v := range n.gen().cfg.Failover.VIPList() {
		st.VIPs = append(st.VIPs, api.VIP{Address: v.Prefix.String(),
			Interface: v.Interface, Held: held[v.Prefix.String()]})
	}
	return st
}

// statusHolds lists what keeps the node from becoming master or from
// preempting: the election's holds, a rival announcing the VIPs while
// the peer is silent, and a link hold-down.
func statusHolds(m failover.Machine, now time.Time) []string {
	h := slices.Clone(m.Holds)
	if m.RivalUntil.After(now) {
		h = append(h, fmt.Sprintf("%s announces the VIPs while the peer is silent: not claiming them", m.Rival))
	}
	if m.StableAt.After(now) {
		h = append(h, fmt.Sprintf("link hold-down after %d carrier losses: no preempting for %s",
			len(m.Losses), m.StableAt.Sub(now).Round(time.Millisecond)))
	}
	return h
}
