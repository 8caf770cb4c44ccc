package node

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/tandem-lb/tandem/failover"
	"github.com/tandem-lb/tandem/pkg/peer"
	"github.com/tandem-lb/tandem/pkg/vip"
)

// What the election hears from outside the node's own state: carrier
// changes, other boxes announcing the VIPs (the peer, or address
// conflicts), and how the peer's adverts arrive (forwardAdverts, on the
// node, hands the adverts themselves).

// forwardLinks hands carrier changes to the election; when a carrier
// returns, the interface's unresolved neighbours are flushed first.
func forwardLinks(ctx context.Context, links <-chan vip.LinkEvent, loop *failover.Loop, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-links:
			if ev.Up {
				// Packets sent while the cable was out left unresolved
				// neighbours; resolve afresh so adverts flow at once.
				if k, err := vip.FlushUnresolved(ev.Iface); err != nil {
					log.Debug("flush unresolved neighbours", "iface", ev.Iface, "err", err)
				} else if k > 0 {
					log.Debug("flushed unresolved neighbours", "iface", ev.Iface, "count", k)
				}
			}
			loop.Post(failover.Link{Iface: ev.Iface, Up: ev.Up})
		}
	}
}

// rivalFeed hands other boxes' announcements of our VIPs to the election,
// and reports the first of each streak. The rival watcher tells it this
// box's own hardware address (own); peerMAC says the peer's, from its
// authenticated adverts. Only the peer's announcements can hold this node
// back; anyone else's are address conflicts, which it counts and reports.
type rivalFeed struct {
	loop    *failover.Loop
	log     *slog.Logger
	events  *eventLog
	peerMAC func() string
	ownMAC  atomic.Pointer[string]
	// conflicts are boxes other than the peer announcing our VIPs.
	conflicts conflictLog
}

// own records this box's hardware address on the VIP interface.
func (f *rivalFeed) own(mac net.HardwareAddr) {
	s := mac.String()
	f.ownMAC.Store(&s)
}

// ownHW is this box's hardware address on the VIP interface, for its
// adverts; nil until the rival watcher learned it.
func (f *rivalFeed) ownHW() []byte {
	p := f.ownMAC.Load()
	if p == nil {
		return nil
	}
	mac, err := net.ParseMAC(*p)
	if err != nil {
		return nil
	}
	return mac
}

// run forwards the sightings of in until ctx ends.
func (f *rivalFeed) run(ctx context.Context, in <-chan vip.Sighting) {
	var lastMAC string
	var lastAt time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-in:
			own := ""
			if p := f.ownMAC.Load(); p != nil {
				own = *p
			}
			mac := s.MAC.String()
			peerMAC := f.peerMAC()
			// While the peer is heard its own announcements (a master
			// whose adverts were late announces alone) are routine;
			// they matter, and are reported, only when it is silent.
			// Anyone else's are address conflicts.
			m := f.loop.Snapshot()
			silent := m.Peer.LastHeard.IsZero() || s.At.Sub(m.Peer.LastHeard) > 3*f.loop.Config().AdvertInterval/2
			if mac != peerMAC {
				f.conflict(s, peerMAC, m.State)
			} else if silent && (mac != lastMAC || s.At.Sub(lastAt) > failover.RivalHold) {
				f.log.Info("another box announces a VIP while the peer is silent", "vip", s.VIP.String(), "mac", mac,
					"state", m.State.String())
				f.events.add("rival", "%s announced %s while the peer is silent (this node %s)", mac, s.VIP, m.State)
				lastMAC, lastAt = mac, s.At
			}
			f.loop.Post(failover.Rival{VIP: s.VIP.String(), MAC: mac, OwnMAC: own, PeerMAC: peerMAC})
		}
	}
}

// conflict counts another box's announcement of one of our VIPs and
// reports the first of each streak (a new address, or the same one after
// a quiet RivalHold) in the log and the events.
func (f *rivalFeed) conflict(s vip.Sighting, peerMAC string, state failover.State) {
	if !f.conflicts.note(s) {
		return
	}
	mac := s.MAC.String()
	peer := peerMAC
	if peer == "" {
		peer = "unknown"
	}
	f.log.Warn("address conflict: another box announces a VIP; it is not the peer, so it holds nothing back",
		"vip", s.VIP.String(), "mac", mac, "peer_mac", peer, "state", state.String())
	f.events.add("conflict", "address conflict: %s announced %s (the peer's address is %s); this node %s ignores it",
		mac, s.VIP, peer, state)
}

// noteLateAdvert warns when adverts arrive late or with gaps: the usual
// cause of a flapping pair (a saturated box, a congested link).
func noteLateAdvert(log *slog.Logger, interval time.Duration, prev, r peer.Received) {
	if !r.Advert.Sent.IsZero() {
		if lat := r.At.Sub(r.Advert.Sent); lat > 2*interval {
			log.Warn("late advert", "peer", r.Advert.Node, "seq", r.Advert.Seq, "latency_ms", lat.Milliseconds())
		}
	}
	if prev.Advert.Node == r.Advert.Node && !prev.Advert.Sent.IsZero() && r.Advert.Seq == prev.Advert.Seq+1 {
		if gap := r.Advert.Sent.Sub(prev.Advert.Sent); gap > 2*interval {
			log.Warn("peer sent adverts late", "peer", r.Advert.Node, "seq", r.Advert.Seq, "gap_ms", gap.Milliseconds())
		}
	}
	if prev.Advert.Node == r.Advert.Node && r.Advert.Seq > prev.Advert.Seq+1 {
		log.Warn("adverts lost", "peer", r.Advert.Node, "missing", r.Advert.Seq-prev.Advert.Seq-1)
	}
}
