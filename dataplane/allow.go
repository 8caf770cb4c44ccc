package dataplane

import (
	"fmt"
	"net/netip"
	"strings"
)

// allowList is a cluster's `allow` CIDRs: the clients let in. An empty
// list lets everyone in. Lists are short (a site's networks), so a linear
// scan beats anything cleverer.
type allowList []netip.Prefix

// parseAllow reads the config's CIDRs. A bare address is taken as a
// single host (/32 or /128). IPv4-mapped prefixes are unmapped so they
// match the unmapped client addresses permits is given.
func parseAllow(cidrs []string) (allowList, error) {
	var out allowList
	for i, s := range cidrs {
		s = strings.TrimSpace(s)
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("allow[%d]: %q is not a CIDR: %w", i, s, err)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// permits reports whether client may connect.
func (l allowList) permits(client netip.Addr) bool {
	if len(l) == 0 {
		return true
	}
	client = client.Unmap().WithZone("")
	for _, p := range l {
		if p.Contains(client) {
			return true
		}
	}
	return false
}
