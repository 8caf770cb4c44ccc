package config

import (
	"encoding/hex"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// listener identifies what a virtual cluster listens on; two clusters may
// not share one (DNS on tcp/53 and udp/53 of a VIP is two listeners).
type listener struct {
	vip      netip.Addr
	port     int
	protocol string
}

func (v *validator) clusters() {
	vips := make(map[netip.Addr]bool)
	for _, p := range v.c.Failover.Prefixes() {
		vips[p.Addr()] = true
	}
	names := make(map[string]int)
	listeners := make(map[listener]int)
	v.outbound(vips)
	for i := range v.c.Clusters {
		vc := &v.c.Clusters[i]
		k := "clusters[" + strconv.Itoa(i) + "]"
		switch j, dup := names[vc.Name]; {
		case vc.Name == "":
			v.add(k+".name", "required")
		case dup:
			v.add(k+".name", "duplicate of clusters[%d].name %q", j, vc.Name)
		default:
			names[vc.Name] = i
		}
		vip, err := netip.ParseAddr(vc.VIP)
		switch {
		case vc.VIP == "":
			v.add(k+".vip", "required: one of failover.vips, address only")
		case err != nil:
			v.add(k+".vip", "must be an IP address, like 198.18.0.100 (got %q)", vc.VIP)
		case !vips[vip]:
			v.add(k+".vip", "%s is not the address of any of failover.vips", vc.VIP)
		}
		if vc.Port < minPort || vc.Port > maxPort {
			v.add(k+".port", "must be %d..%d (got %d)", minPort, maxPort, vc.Port)
		}
		if !slices.Contains(Protocols, vc.Protocol) {
			v.add(k+".protocol", "must be tcp, udp or http (got %q)", vc.Protocol)
		}
		if !vc.IsNAT() && !slices.Contains(Algorithms, vc.Algorithm) && vc.Algorithm != "maglev" {
			v.add(k+".algorithm", "must be one of %s (got %q)", strings.Join(Algorithms, ", "), vc.Algorithm)
		}
		if err == nil {
			l := listener{vip, vc.Port, vc.transport()}
			if j, dup := listeners[l]; dup {
				v.add(k, "listens on %s port %d/%s like clusters[%d] (%s)", vc.VIP, vc.Port, vc.Protocol, j, v.c.Clusters[j].Name)
			} else {
				listeners[l] = i
			}
		}
		for j, a := range vc.Allow {
			if _, err := netip.ParsePrefix(a); err != nil {
				v.add(k+".allow["+strconv.Itoa(j)+"]", "must be a CIDR prefix, like 198.18.0.0/15 (got %q)", a)
			}
		}
		if vc.MaxConns < 0 {
			v.add(k+".max_conns", "must not be negative (got %d)", vc.MaxConns)
		}
		v.natCluster(k, vc, vips)
		if vc.IsNAT() {
			v.gatewayFor(k, vc)
		} else {
			v.sourceAddresses(k, vc)
		}
		if vc.Persistence != nil {
			v.persistence(k+".persistence", vc.Persistence, vip)
		}
		v.httpCluster(i, vc, vip, listeners)
		if vc.HealthCheck != nil {
			v.healthCheck(k+".health_check", vc.HealthCheck)
		}
		v.traffic(k, vc)
		if vc.Agent != nil {
			v.agent(k+".agent", vc.Agent)
		}
		v.servers(k, vc.Servers)
	}
}

// sourceAddresses checks a UDP cluster's source_addresses: addresses of
// the servers' family, no duplicates.
func (v *validator) sourceAddresses(k string, vc *VirtualCluster) {
	if len(vc.SourceAddresses) > 0 && vc.Protocol != "udp" {
		v.add(k+".source_addresses", "only for protocol: udp clusters (this one is %q)", vc.Protocol)
		return
	}
	seen := make(map[netip.Addr]bool)
	for j, a := range vc.SourceAddresses {
		sk := k + ".source_addresses[" + strconv.Itoa(j) + "]"
		ip, err := netip.ParseAddr(a)
		if err != nil || ip.Zone() != "" || ip.IsUnspecified() || ip.IsMulticast() {
			v.add(sk, "must be a local unicast IP address, like 198.18.0.11 (got %q)", a)
			continue
		}
		ip = ip.Unmap()
		if seen[ip] {
			v.add(sk, "duplicate address %s", ip)
		}
		seen[ip] = true
		for _, s := range vc.Servers {
			ap, err := netip.ParseAddrPort(s.Address)
			if err == nil && ap.Addr().Unmap().Is4() != ip.Is4() {
				v.add(sk, "%s is not of the family of server %s (%s)", ip, s.Name, s.Address)
				break
			}
		}
	}
}

func (v *validator) persistence(k string, p *Persistence, vip netip.Addr) {
	if p.Mode != persistenceModeSourceIP && p.Mode != PersistenceCookie {
		v.add(k+".mode", "must be source_ip or cookie (got %q)", p.Mode)
	}
	maxMask, family := maxMaskV4, "IPv4"
	if vip.Is6() && !vip.Is4In6() {
		maxMask, family = maxMaskV6, "IPv6"
	}
	if p.Mask < 0 || p.Mask > maxMask {
		v.add(k+".mask", "must be 0..%d for an %s VIP (got %d)", maxMask, family, p.Mask)
	}
	if p.Timeout <= 0 {
		v.add(k+".timeout", "must be > 0, like 10m (got %s)", p.Timeout)
	}
}

func (v *validator) healthCheck(k string, h *HealthCheck) {
	if !slices.Contains(HealthChecks, h.Type) {
		v.add(k+".type", "must be one of %s (got %q)", strings.Join(HealthChecks, ", "), h.Type)
	}
	needSend := func() {
		if h.Send == "" && h.SendHex == "" {
			v.add(k+".send", "%s check needs send or send_hex", h.Type)
		}
		if h.Send != "" && h.SendHex != "" {
			v.add(k+".send_hex", "set either send or send_hex, not both")
		}
	}
	switch h.Type {
	case "http":
		if !strings.HasPrefix(h.Path, "/") {
			v.add(k+".path", "http check needs a path starting with / (got %q)", h.Path)
		}
		if h.ExpectStatus < 100 || h.ExpectStatus > 599 {
			v.add(k+".expect_status", "must be an HTTP status 100..599 (got %d)", h.ExpectStatus)
		}
	case "send_expect", "udp":
		// A banner check (SMTP's "^220") sends nothing: send is optional
		// for send_expect; a udp check must send something to get a reply.
		if h.Type == "udp" {
			needSend()
		} else if h.Send != "" && h.SendHex != "" {
			v.add(k+".send_hex", "set either send or send_hex, not both")
		}
		if _, err := regexp.Compile(h.ExpectBody); err != nil {
			v.add(k+".expect_body", "must be a valid regexp: %v", err)
		}
	case "dns":
		if h.Query == "" {
			v.add(k+".query", "dns check needs a query: the name to ask for")
		}
	case "radius":
		if h.Secret == "" {
			v.add(k+".secret", "radius check needs the shared secret")
		}
	case "exec":
		if h.Command == "" {
			v.add(k+".command", "exec check needs a command")
		}
	}
	if h.SendHex != "" {
		if _, err := hex.DecodeString(h.SendHex); err != nil {
			v.add(k+".send_hex", "must be hex bytes, like 0d0a (got %q)", h.SendHex)
		}
	}
	if h.Interval <= 0 {
		v.add(k+".interval", "must be > 0 (got %s)", h.Interval)
	}
	switch {
	case h.Timeout <= 0:
		v.add(k+".timeout", "must be > 0 (got %s)", h.Timeout)
	case h.Interval > 0 && h.Timeout > h.Interval:
		v.add(k+".timeout", "must not exceed interval %s (got %s)", h.Interval, h.Timeout)
	}
	if h.Rise < 1 {
		v.add(k+".rise", "must be at least 1 (got %d)", h.Rise)
	}
	if h.Fall < 1 {
		v.add(k+".fall", "must be at least 1 (got %d)", h.Fall)
	}
	v.checkKeys(k, h)
}

func (v *validator) servers(k string, servers []Server) {
	if len(servers) == 0 {
		v.add(k+".servers", "required: at least one server")
	}
	names := make(map[string]int)
	for i, s := range servers {
		sk := k + ".servers[" + strconv.Itoa(i) + "]"
		switch j, dup := names[s.Name]; {
		case s.Name == "":
			v.add(sk+".name", "required")
		case dup:
			v.add(sk+".name", "duplicate of %s.servers[%d].name %q", k, j, s.Name)
		default:
			names[s.Name] = i
		}
		if s.Address == "" {
			v.add(sk+".address", "required: the server's IP:port")
		} else if _, err := parseAddrPort(s.Address); err != nil {
			v.add(sk+".address", "%v", err)
		}
		if s.Weight < minWeight || s.Weight > maxWeight {
			v.add(sk+".weight", "must be %d..%d (got %d)", minWeight, maxWeight, s.Weight)
		}
		if s.MaxConns < 0 {
			v.add(sk+".max_conns", "must be ≥ 0; 0 means unlimited (got %d)", s.MaxConns)
		}
	}
}
