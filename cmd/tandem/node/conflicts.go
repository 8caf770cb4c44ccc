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

// ownHW is this node's hardware address on the VIP interface, for its
// adverts; nil until the ARP watcher learned it.
func (n *Node) ownHW() []byte {
	p := n.ownMAC.Load()
	if p == nil {
		return nil
	}
	mac, err := net.ParseMAC(*p)
	if err != nil {
		return nil
	}
	return mac
}

// noteConflict counts another box's announcement of one of our VIPs and
// reports the first of each streak (a new address, or the same one after
// a quiet RivalHold) in the log and the events.
func (n *Node) noteConflict(s vip.Sighting, peerMAC string, state failover.State) {
	mac := s.MAC.String()
	c := &n.conflicts
	c.mu.Lock()
	c.total++
	c.last = &api.Conflict{VIP: s.VIP.String(), MAC: mac, At: s.At}
	report := mac != c.streak || s.At.Sub(c.at) > failover.RivalHold
	c.streak, c.at = mac, s.At
	c.mu.Unlock()
	if !report {
		return
	}
	peer := peerMAC
	if peer == "" {
		peer = "unknown"
	}
	n.log.Warn("address conflict: another box announces a VIP; it is not the peer, so it holds nothing back",
		"vip", s.VIP.String(), "mac", mac, "peer_mac", peer, "state", state.String())
	n.events.add("conflict", "address conflict: %s announced %s (the peer's address is %s); this node %s ignores it",
		mac, s.VIP, peer, state)
}

// conflictStatus fills the split-brain status's conflict fields.
func (n *Node) conflictStatus(sb *api.SplitBrain) {
	c := &n.conflicts
	c.mu.Lock()
	defer c.mu.Unlock()
	sb.AddressConflicts = c.total
	if c.last != nil {
		l := *c.last
		sb.LastConflict = &l
	}
}
