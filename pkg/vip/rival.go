package vip

import (
	"bytes"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

// Sighting is another box announcing one of our VIPs: a gratuitous ARP
// (sender and target address both the VIP) from a hardware address that
// is not ours. Only a live holder sends those, so a box whose daemon
// died with the VIP still on its interface (its kernel answers ARP
// requests, but announces nothing) is never taken for a rival.
type Sighting struct {
	VIP netip.Addr
	MAC net.HardwareAddr
	At  time.Time
}

// RivalStats counts what a RivalWatcher read.
type RivalStats struct {
	// Read counts ARP frames read; Malformed the ones that did not parse
	// (dropped); Sightings the rivals found; Dropped the sightings lost
	// because the consumer was not keeping up.
	Read, Malformed, Sightings, Dropped uint64
}

// RivalWatcher reads the ARP traffic of an interface and reports
// gratuitous ARPs for our VIPs from other boxes (IPv4 only), the signal
// of a split brain the heartbeats cannot see.
type RivalWatcher struct {
	iface string
	vips  atomic.Pointer[[]netip.Addr]

	read, malformed, sightings, dropped atomic.Uint64
}

// NewRivalWatcher watches iface for announcements of vips.
func NewRivalWatcher(iface string, vips []netip.Prefix) *RivalWatcher {
	w := &RivalWatcher{iface: iface}
	w.SetVIPs(vips)
	return w
}

// SetVIPs changes the addresses watched (a reload).
func (w *RivalWatcher) SetVIPs(vips []netip.Prefix) {
	a := make([]netip.Addr, 0, len(vips))
	for _, p := range vips {
		if p.Addr().Is4() {
			a = append(a, p.Addr())
		}
	}
	w.vips.Store(&a)
}

// Stats returns a snapshot of the counters.
func (w *RivalWatcher) Stats() RivalStats {
	return RivalStats{Read: w.read.Load(), Malformed: w.malformed.Load(),
		Sightings: w.sightings.Load(), Dropped: w.dropped.Load()}
}

// inspect decides whether an Ethernet frame is a rival's announcement; own
// is our hardware address. Frames that do not parse are counted and
// dropped; it never panics on any input.
func (w *RivalWatcher) inspect(frame []byte, own net.HardwareAddr, now time.Time) (Sighting, bool) {
	w.read.Add(1)
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || f.EtherType != ethernet.EtherTypeARP {
		w.malformed.Add(1)
		return Sighting{}, false
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		w.malformed.Add(1)
		return Sighting{}, false
	}
	if bytes.Equal(p.SenderHardwareAddr, own) || p.SenderIP != p.TargetIP {
		return Sighting{}, false
	}
	for _, v := range *w.vips.Load() {
		if p.SenderIP == v {
			w.sightings.Add(1)
			return Sighting{VIP: v, MAC: p.SenderHardwareAddr, At: now}, true
		}
	}
	return Sighting{}, false
}
