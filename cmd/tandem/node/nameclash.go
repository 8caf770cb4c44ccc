package node

import (
	"time"

	"github.com/tandem-lb/tandem/failover"
	"github.com/tandem-lb/tandem/pkg/api"
	"github.com/tandem-lb/tandem/pkg/peer"
)

// nameClashPeer marks the peer entry of the clashing box in status, as
// the drift check would: its name is ours, and node.name is what differs.
// (The hold itself is failover's HoldNameClash: with both boxes named
// alike every advert of the other is taken for our own, the election
// never sees a peer, and both would become master.)
func nameClashPeer(p *api.Peer, self string, c peer.NameClash, now time.Time) {
	if !failover.NameClash(c.At, now) || (p.Address != c.From && p.Name != "") {
		return
	}
	p.Name = self
	p.ConfigMatch = false
	p.ConfigDiff = append(p.ConfigDiff, "node.name (the same as this node's)")
}
