//go:build linux

package nft

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
)

// stickyOf finds a service of the last applied Spec that has persistence.
func (m *Manager) stickyOf(service string) (Service, error) {
	if m.last != nil {
		for _, svc := range m.last.Services {
			if svc.Name == service && svc.Sticky != nil {
				return svc, nil
			}
		}
	}
	return Service{}, fmt.Errorf("%w: %q has no persistence in the applied spec", ErrUnknownService, service)
}

// stickySetOf is the persistence set of one eligible server.
func (m *Manager) stickySetOf(svc Service, server netip.AddrPort) *nftables.Set {
	return &nftables.Set{Table: m.tbl(), Name: stickySet(ServiceID(svc.Name), server), Dynamic: true,
		HasTimeout: true, KeyType: famOf(svc.VIP).addrT}
}

// eligibleOf lists the distinct eligible servers: those with a set.
func eligibleOf(svc Service) []netip.AddrPort {
	var out []netip.AddrPort
	for _, ap := range svc.Eligible {
		if !slices.Contains(out, ap) {
			out = append(out, ap)
		}
	}
	return out
}

// StickyEntries lists the persistence entries of a service, for status
// output and for replication to the peer. In the rare case a client has
// entries for two servers (two first flows raced), the rules use the one
// of the server listed first in Eligible; both are listed.
func (m *Manager) StickyEntries(service string) ([]StickyEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	svc, err := m.stickyOf(service)
	if err != nil {
		return nil, err
	}
	mask := svc.Sticky.mask(svc.VIP.Is6())
	var out []StickyEntry
	for _, ap := range eligibleOf(svc) {
		set := m.stickySetOf(svc, ap)
		elems, err := m.nft.GetSetElements(set)
		if err != nil {
			return nil, fmt.Errorf("nft: list %s: %w", set.Name, err)
		}
		for _, e := range elems {
			if a, ok := netip.AddrFromSlice(e.Key); ok {
				out = append(out, StickyEntry{Client: netip.PrefixFrom(a, mask), Server: ap, Expires: e.Expires})
			}
		}
	}
	return out, nil
}

// AddSticky loads persistence entries, typically replicated from the
// peer, each with its remaining lifetime. Entries for servers that are
// not eligible here are skipped (persistence would not use them). An
// entry already present takes the given lifetime (this kernel, 6.18,
// updates an element's timeout on a repeated add): on a backup the
// peer's copy is the fresher one.
func (m *Manager) AddSticky(service string, entries ...StickyEntry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	svc, err := m.stickyOf(service)
	if err != nil {
		return err
	}
	v6 := svc.VIP.Is6()
	mask := svc.Sticky.mask(v6)
	eligible := eligibleOf(svc)
	per := map[netip.AddrPort][]nftables.SetElement{}
	for _, e := range entries {
		if !e.Client.IsValid() || e.Client.Addr().Is6() != v6 || !e.Server.IsValid() || e.Server.Addr().Is6() != v6 {
			return fmt.Errorf("nft: sticky entry %v -> %v: not the family of %s", e.Client, e.Server, svc.VIP)
		}
		if !slices.Contains(eligible, e.Server) {
			continue
		}
		timeout := e.Expires
		if timeout <= 0 {
			timeout = svc.Sticky.Timeout
		}
		per[e.Server] = append(per[e.Server], nftables.SetElement{
			Key: addrBytes(maskAddr(e.Client.Addr(), mask)), Timeout: max(timeout, time.Millisecond)})
	}
	if len(per) == 0 {
		return nil
	}
	for ap, elems := range per {
		set := m.stickySetOf(svc, ap)
		for i := 0; i < len(elems); i += elemChunk {
			if err := m.nft.SetAddElements(set, elems[i:min(i+elemChunk, len(elems))]); err != nil {
				return fmt.Errorf("nft: add to %s: %w", set.Name, err)
			}
		}
	}
	if err := m.nft.Flush(); err != nil {
		return fmt.Errorf("nft: add sticky entries of %s: %w", service, err)
	}
	return nil
}

// DeleteSticky forgets every persistence entry of a service that points
// at server and returns how many there were. Apply already does this
// when a server leaves Eligible (its set goes with it); this is for a
// caller that wants the entries gone without an Apply.
func (m *Manager) DeleteSticky(service string, server netip.AddrPort) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	svc, err := m.stickyOf(service)
	if err != nil {
		return 0, err
	}
	if !slices.Contains(eligibleOf(svc), server) {
		return 0, nil // no set: nothing can point there
	}
	set := m.stickySetOf(svc, server)
	elems, err := m.nft.GetSetElements(set)
	if err != nil {
		return 0, fmt.Errorf("nft: list %s: %w", set.Name, err)
	}
	m.nft.FlushSet(set)
	if err := m.nft.Flush(); err != nil {
		return 0, fmt.Errorf("nft: flush %s: %w", set.Name, err)
	}
	return len(elems), nil
}

// Counters returns the drop counters, service name -> reason -> packets
// (reasons ReasonAllow, ReasonMaxConns, ReasonNoServer; the outbound
// policy under OutboundCounters with ReasonDenied). Counters survive
// applies as long as their service does.
func (m *Manager) Counters() (map[string]map[string]uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]map[string]uint64{}
	if m.last == nil {
		return out, nil
	}
	objs, err := m.nft.GetObjects(m.tbl())
	if err != nil {
		return nil, fmt.Errorf("nft: list counters: %w", err)
	}
	pk := map[string]uint64{}
	for _, o := range objs {
		if c, ok := o.(*nftables.CounterObj); ok {
			pk[c.Name] = c.Packets
		}
	}
	for _, svc := range m.last.Services {
		id := ServiceID(svc.Name)
		reasons := map[string]uint64{}
		for _, r := range []string{ReasonAllow, ReasonMaxConns, ReasonNoServer} {
			if v, ok := pk[dropCounter(r, id)]; ok {
				reasons[r] = v
			}
		}
		out[svc.Name] = reasons
	}
	if m.last.Outbound != nil {
		if v, ok := pk[counterDenied]; ok {
			out[OutboundCounters] = map[string]uint64{ReasonDenied: v}
		}
	}
	return out, nil
}
