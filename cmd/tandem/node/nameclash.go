package node

import (
	"fmt"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
	"github.com/tandem-lb/tandem/pkg/peer"
)

// nameClashFor is how long after the last advert heard under this node's
// name from another box the node stays held: the other box's adverts
// arrive every advert interval, so a few seconds of silence means it was
// renamed or stopped.
const nameClashFor = 5 * time.Second

// nameClashHold is the hold a name clash puts on this node ("" when
// none): with both boxes named alike every advert of the other is taken
// for our own, the election never sees a peer, and both would become
// master. A plain hold: a running master keeps its VIPs (it was serving),
// a backup or a newly started box does not take them.
func nameClashHold(self string, c peer.NameClash, now time.Time) string {
	if c.At.IsZero() || now.Sub(c.At) > nameClashFor {
		return ""
	}
	return fmt.Sprintf("node name %q is also used by the box at %s: give each box its own node.name", self, c.From)
}

// nameClashPeer marks the peer entry of the clashing box in status, as
// the drift check would: its name is ours, and node.name is what differs.
func nameClashPeer(p *api.Peer, self string, c peer.NameClash, now time.Time) {
	if nameClashHold(self, c, now) == "" || (p.Address != c.From && p.Name != "") {
		return
	}
	p.Name = self
	p.ConfigMatch = false
	p.ConfigDiff = append(p.ConfigDiff, "node.name (the same as this node's)")
}
