//go:build linux

package node

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/tandem-lb/tandem/dataplane"
	"github.com/tandem-lb/tandem/pkg/config"
	"github.com/tandem-lb/tandem/pkg/ctsync"
	"github.com/tandem-lb/tandem/pkg/nft"
)

// openNAT checks that the kernel can serve nat clusters (ctnetlink,
// nf_tables, no foreign table of Tandem's name) and opens its netfilter
// table and its connection tracking, saying which part is missing.
func openNAT(cfg *config.Config, log *slog.Logger) (natRules, flowTable, error) {
	if err := ctsync.Probe(); err != nil {
		return nil, nil, fmt.Errorf("mode: nat clusters need conntrack over ctnetlink: %w", err)
	}
	m, err := nft.New(nft.DefaultTable, log.With("table", nft.DefaultTable))
	if err != nil {
		return nil, nil, fmt.Errorf("mode: nat clusters need nf_tables: %w", err)
	}
	if _, err := m.Exists(); err != nil { // a foreign table of our name
		m.Close()
		return nil, nil, fmt.Errorf("mode: nat: %w", err)
	}
	t, err := ctsync.Open(log)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("mode: nat clusters need conntrack over ctnetlink: %w", err)
	}
	r := &nftRules{m: m}
	if o := cfg.Outbound; o != nil {
		r.outbound = outboundSpec(o)
	}
	return r, t, nil
}

// nftRules writes the nat services into Tandem's nftables table.
type nftRules struct {
	m        *nft.Manager
	outbound *nft.Outbound
}

// ApplyNAT replaces the table's rules with services, atomically.
func (r *nftRules) ApplyNAT(services []dataplane.NATService) error {
	spec := nft.Spec{Outbound: r.outbound}
	for _, s := range services {
		svc := nft.Service{
			Name: s.Name, Mark: s.Mark, VIP: s.VIP, Port: s.Port, Proto: s.Proto,
			Pick: map[dataplane.NATPick]nft.Pick{dataplane.PickRoundRobin: nft.PickRoundRobin,
				dataplane.PickSourceHash: nft.PickSourceHash, dataplane.PickFiveTuple: nft.PickFiveTuple}[s.Pick],
			Seed: s.Seed, Slots: s.Slots, Eligible: s.Eligible, SNAT: s.SNAT, Allow: s.Allow,
			MaxConns: uint32(max(s.MaxConns, 0)),
		}
		if s.Sticky != nil {
			svc.Sticky = &nft.Sticky{Mask: s.Sticky.Mask, Timeout: s.Sticky.Timeout}
		}
		spec.Services = append(spec.Services, svc)
	}
	return r.m.Apply(spec)
}

// Remove deletes the table (not a foreign one).
func (r *nftRules) Remove() error { return r.m.Remove() }

// outboundSpec is the outbound policy of the config (validated).
func outboundSpec(o *config.Outbound) *nft.Outbound {
	out := &nft.Outbound{InIface: o.Interface, Mark: dataplane.NATOutboundMark}
	for _, s := range o.Sources {
		if p, err := netip.ParsePrefix(s); err == nil {
			out.Sources = append(out.Sources, p.Masked())
		}
	}
	if a, err := netip.ParseAddr(o.SNATAddress); err == nil {
		out.SNAT = a.Unmap()
	}
	for _, r := range o.Allow {
		p, err := netip.ParsePrefix(r.Dest)
		if err != nil {
			continue
		}
		rule := nft.OutRule{Dest: p.Masked(), Proto: r.Proto}
		for _, port := range r.Ports {
			rule.Ports = append(rule.Ports, uint16(port))
		}
		out.Allow = append(out.Allow, rule)
	}
	return out
}

// AddSticky loads a persistence entry replicated from the peer into the
// kernel map of cluster (node's stickyKernel).
func (r *nftRules) AddSticky(cluster string, client netip.Prefix, server netip.AddrPort, ttl time.Duration) error {
	return r.m.AddSticky(cluster, nft.StickyEntry{Client: client, Server: server, Expires: ttl})
}

// FlushSticky forgets every persistence entry of cluster.
func (r *nftRules) FlushSticky(cluster string) error {
	entries, err := r.m.StickyEntries(cluster)
	if err != nil {
		return err
	}
	seen := map[netip.AddrPort]bool{}
	for _, e := range entries {
		if seen[e.Server] {
			continue
		}
		seen[e.Server] = true
		if _, err := r.m.DeleteSticky(cluster, e.Server); err != nil {
			return err
		}
	}
	return nil
}

// DropCounters returns the packets the kernel dropped for cluster, by
// reason, leaving out the reasons that never happened.
func (r *nftRules) DropCounters(cluster string) (map[string]uint64, error) {
	all, err := r.m.Counters()
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for reason, v := range all[cluster] {
		if v > 0 {
			out[reason] = v
		}
	}
	return out, nil
}
