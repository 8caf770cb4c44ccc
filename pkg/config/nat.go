package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Cluster modes.
const (
	ModeProxy = "proxy"
	ModeNAT   = "nat"
)

// Ways the answers of a nat cluster come back (nat.return).
const (
	ReturnGateway = "gateway"
	ReturnSNAT    = "snat"
)

// NATAlgorithms are the algorithms the kernel can run for a nat cluster.
var NATAlgorithms = []string{"round_robin", "weighted_round_robin", "source_hash", "maglev"}

// NAT tunes a `mode: nat` cluster.
type NAT struct {
	// Return is how the servers' answers come back: gateway (the servers'
	// default gateway is an inside VIP of the pair; they see the client's
	// address) or snat (the master also rewrites the source to
	// SNATAddress, so the servers need no route change) [gateway].
	Return string `mapstructure:"return" json:"return"`
	// SNATAddress (return: snat) is one of failover.vips, address only:
	// it moves with the master, so the server-side tuple of a flow is the
	// same on both boxes.
	SNATAddress string `mapstructure:"snat_address" json:"snat_address,omitempty"`
	// Drain keeps the established flows of a server that goes down or is
	// disabled until they end; false cuts them at once (their conntrack
	// entries are deleted, so the clients' next packets are sent to
	// another server) [true].
	Drain *bool `mapstructure:"drain" json:"drain,omitempty"`
}

// Drains reports nat.drain with its default.
func (n *NAT) Drains() bool { return n == nil || n.Drain == nil || *n.Drain }

// Outbound is the pair's forwarding policy for the servers' own
// connections (backups, updates, mail going out) when nat clusters
// return through the pair: the firewall role of the appliances.
type Outbound struct {
	// Interface is the inside interface the servers' connections arrive
	// on; required.
	Interface string `mapstructure:"interface" json:"interface"`
	// Sources are the servers' subnets [the subnets of the VIPs on
	// Interface].
	Sources []string `mapstructure:"sources" json:"sources,omitempty"`
	// SNATAddress, one of failover.vips, rewrites the source of those
	// connections where the outside does not route the servers' subnet;
	// empty keeps the servers' addresses [""].
	SNATAddress string `mapstructure:"snat_address" json:"snat_address,omitempty"`
	// Allow lists what the servers may open; empty allows nothing (only
	// the replies of the clusters' flows pass).
	Allow []OutboundRule `mapstructure:"allow" json:"allow,omitempty"`
}

// OutboundRule lets the servers open connections to Dest (a CIDR prefix)
// over Proto (tcp, udp, or empty for both) on Ports (empty: any).
type OutboundRule struct {
	Dest  string `mapstructure:"dest" json:"dest"`
	Proto string `mapstructure:"proto" json:"proto,omitempty"`
	Ports []int  `mapstructure:"ports" json:"ports,omitempty"`
}

// VIP is one entry of failover.vips: an address with its prefix length,
// and the interface it lives on.
type VIP struct {
	Prefix    netip.Prefix
	Interface string
}

// parseVIP reads "ADDR/LEN" or "ADDR/LEN dev IFACE"; iface is "" when the
// entry names none.
func parseVIP(s string) (p netip.Prefix, iface string, err error) {
	f := strings.Fields(s)
	switch {
	case len(f) == 1:
	case len(f) == 3 && f[1] == "dev" && validIfaceName(f[2]):
		iface = f[2]
	default:
		return netip.Prefix{}, "", fmt.Errorf("must be an address in CIDR form, optionally with its interface, like 198.18.0.100/24 or 198.19.1.1/24 dev eth1 (got %q)", s)
	}
	p, err = netip.ParsePrefix(f[0])
	if err != nil {
		return netip.Prefix{}, "", fmt.Errorf("must be an address in CIDR form, like 198.18.0.100/24 (got %q)", f[0])
	}
	return p, iface, nil
}

// validIfaceName is what Linux accepts as an interface name.
func validIfaceName(s string) bool {
	return s != "" && len(s) < 16 && s != "." && s != ".." && !strings.ContainsAny(s, "/: \t")
}

// VIPList returns failover.vips parsed, in order, each with its interface
// (Interface when the entry names none). It assumes a validated config and
// skips an entry that does not parse.
func (f Failover) VIPList() []VIP {
	out := make([]VIP, 0, len(f.VIPs))
	for _, s := range f.VIPs {
		if p, iface, err := parseVIP(s); err == nil {
			if iface == "" {
				iface = f.Interface
			}
			out = append(out, VIP{Prefix: p, Interface: iface})
		}
	}
	return out
}

// VIPInterfaces returns the interfaces the VIPs live on, Interface first.
func (f Failover) VIPInterfaces() []string {
	out := []string{f.Interface}
	for _, v := range f.VIPList() {
		if !slices.Contains(out, v.Interface) {
			out = append(out, v.Interface)
		}
	}
	return out
}

// PrefixesOn returns the VIPs that live on iface.
func (f Failover) PrefixesOn(iface string) []netip.Prefix {
	var out []netip.Prefix
	for _, v := range f.VIPList() {
		if v.Interface == iface {
			out = append(out, v.Prefix)
		}
	}
	return out
}

// IsNAT reports whether the cluster is served by the kernel.
func (vc VirtualCluster) IsNAT() bool { return vc.Mode == ModeNAT }

// HasNAT reports whether some cluster of c is a nat cluster.
func (c *Config) HasNAT() bool {
	for _, vc := range c.Clusters {
		if vc.IsNAT() {
			return true
		}
	}
	return false
}

// natCluster checks the nat-specific keys of cluster k.
func (v *validator) natCluster(k string, vc *VirtualCluster, vips map[netip.Addr]bool) {
	switch vc.Mode {
	case ModeProxy:
		if vc.NAT != nil {
			v.add(k+".nat", "only for mode: nat clusters (this one is mode: proxy)")
		}
		if vc.Algorithm == "maglev" {
			v.add(k+".algorithm", "maglev is for mode: nat clusters (it runs in the kernel); a proxy cluster has source_hash")
		}
		return
	case ModeNAT:
	default:
		v.add(k+".mode", "must be proxy or nat (got %q)", vc.Mode)
		return
	}
	if vc.Algorithm != "" && !slices.Contains(NATAlgorithms, vc.Algorithm) {
		v.add(k+".algorithm", "%s cannot run in the kernel: a nat cluster takes one of %s (got %q)",
			vc.Algorithm, strings.Join(NATAlgorithms, ", "), vc.Algorithm)
	}
	if len(vc.SourceAddresses) > 0 {
		v.add(k+".source_addresses", "not for mode: nat clusters (the kernel forwards the client's own packets)")
	}
	vip, _ := netip.ParseAddr(vc.VIP)
	for i, s := range vc.Servers {
		sk := k + ".servers[" + strconv.Itoa(i) + "]"
		if s.SendProxy {
			v.add(sk+".send_proxy", "not for mode: nat clusters (the server sees the client's packets, and with return: gateway its address)")
		}
		if s.MaxConns != 0 {
			v.add(sk+".max_conns", "not for mode: nat clusters (use the cluster's max_conns)")
		}
		if ap, err := netip.ParseAddrPort(s.Address); err == nil && vip.IsValid() && ap.Addr().Unmap().Is4() != vip.Unmap().Is4() {
			v.add(sk+".address", "a nat cluster forwards within one address family: %s is not of the family of the VIP %s", s.Address, vc.VIP)
		}
	}
	if vc.NAT == nil {
		return
	}
	n := vc.NAT
	switch n.Return {
	case ReturnGateway:
		if n.SNATAddress != "" {
			v.add(k+".nat.snat_address", "only with return: snat")
		}
	case ReturnSNAT:
		a, err := netip.ParseAddr(n.SNATAddress)
		switch {
		case n.SNATAddress == "":
			v.add(k+".nat.snat_address", "required with return: snat: one of failover.vips, address only (an inside floating address)")
		case err != nil:
			v.add(k+".nat.snat_address", "must be an IP address (got %q)", n.SNATAddress)
		case !vips[a]:
			v.add(k+".nat.snat_address", "%s is not the address of any of failover.vips: the SNAT address must move with the master", n.SNATAddress)
		case vip.IsValid() && a.Unmap().Is4() != vip.Unmap().Is4():
			v.add(k+".nat.snat_address", "%s is not of the family of the VIP %s", n.SNATAddress, vc.VIP)
		}
	default:
		v.add(k+".nat.return", "must be gateway or snat (got %q)", n.Return)
	}
}

// outbound checks the outbound policy.
func (v *validator) outbound(vips map[netip.Addr]bool) {
	o := v.c.Outbound
	if o == nil {
		return
	}
	if !v.c.HasNAT() {
		v.add("outbound", "only with mode: nat clusters (the pair forwards the servers' connections only when it is their gateway)")
	}
	if !validIfaceName(o.Interface) {
		v.add("outbound.interface", "required: the inside interface the servers' connections arrive on (got %q)", o.Interface)
	}
	for i, s := range o.Sources {
		if _, err := netip.ParsePrefix(s); err != nil {
			v.add("outbound.sources["+strconv.Itoa(i)+"]", "must be a CIDR prefix, like 198.19.1.0/24 (got %q)", s)
		}
	}
	if o.SNATAddress != "" {
		if a, err := netip.ParseAddr(o.SNATAddress); err != nil || !vips[a] {
			v.add("outbound.snat_address", "must be the address of one of failover.vips, so it moves with the master (got %q)", o.SNATAddress)
		}
	}
	for i, r := range o.Allow {
		k := "outbound.allow[" + strconv.Itoa(i) + "]"
		if _, err := netip.ParsePrefix(r.Dest); err != nil {
			v.add(k+".dest", "must be a CIDR prefix, like 0.0.0.0/0 (got %q)", r.Dest)
		}
		if r.Proto != "" && r.Proto != "tcp" && r.Proto != "udp" {
			v.add(k+".proto", "must be tcp, udp or empty for both (got %q)", r.Proto)
		}
		if len(r.Ports) > 0 && r.Proto == "" {
			v.add(k+".ports", "ports need proto: tcp or udp")
		}
		for j, p := range r.Ports {
			if p < minPort || p > maxPort {
				v.add(k+".ports["+strconv.Itoa(j)+"]", "must be %d..%d (got %d)", minPort, maxPort, p)
			}
		}
	}
}

// gatewayFor checks that a return: gateway cluster's servers can use the
// pair as their gateway: each server lies in the subnet of a VIP (the
// inside floating address) other than the cluster's own.
func (v *validator) gatewayFor(k string, vc *VirtualCluster) {
	if vc.NAT == nil || vc.NAT.Return != ReturnGateway || len(v.c.Failover.Prefixes()) != len(v.c.Failover.VIPs) {
		return // (a VIP that does not parse is reported on its own)
	}
	vip, _ := netip.ParseAddr(vc.VIP)
	for i, s := range vc.Servers {
		ap, err := netip.ParseAddrPort(s.Address)
		if err != nil {
			continue
		}
		ok := false
		for _, p := range v.c.Failover.Prefixes() {
			if p.Addr() != vip && p.Contains(ap.Addr().Unmap()) {
				ok = true
				break
			}
		}
		if !ok {
			v.add(k+".servers["+strconv.Itoa(i)+"].address",
				"nat.return gateway: %s is in no VIP's subnet; the servers' gateway must be an inside floating address of the pair on their subnet (add one to failover.vips, like 198.19.1.1/24 dev eth1) or use nat.return: snat",
				s.Address)
		}
	}
}
