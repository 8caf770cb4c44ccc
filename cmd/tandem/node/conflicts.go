package node

import (
	"net"
	"sync"
	"time"

	"github.com/tandem-lb/tandem/failover"
	"github.com/tandem-lb/tandem/pkg/api"
	"github.com/tandem-lb/tandem/pkg/vip"
)

// conflictLog records the address conflicts: boxes other than the peer
// announcing one of our VIPs. The peer is known by the hardware address
// in its authenticated adverts; anyone else's announcement (a
// misconfigured box, a spoofer) never holds this node back (see
// failover.Rival), it is only logged, counted and shown.
type conflictLog struct {
	mu     sync.Mutex
	total  uint64
	last   *api.Conflict
	streak string // MAC of the last reported streak
	at     time.Time
}

// note counts s and reports whether it starts a streak (a new address,
// or the same one after a quiet RivalHold), which is worth reporting.
func (c *conflictLog) note(s vip.Sighting) bool {
	mac := s.MAC.String()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total++
	c.last = &api.Conflict{VIP: s.VIP.String(), MAC: mac, At: s.At}
	report := mac != c.streak || s.At.Sub(c.at) > failover.RivalHold
	c.streak, c.at = mac, s.At
	return report
}

// status fills the split-brain status's conflict fields.
func (c *conflictLog) status(sb *api.SplitBrain) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sb.AddressConflicts = c.total
	if c.last != nil {
		l := *c.last
		sb.LastConflict = &l
	}
}

// peerMAC is the hardware address the peer's last advert carried, "" when
// unknown.
func (n *Node) peerMAC() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.lastAdvert.Advert.MAC) == 0 {
		return ""
	}
	return net.HardwareAddr(n.lastAdvert.Advert.MAC).String()
}
