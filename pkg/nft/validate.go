package nft

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// maxSlots bounds a slot table: a Maglev table of 65537 entries is the
// largest the balancers build, and the kernel map holds it in one batch.
const maxSlots = 1 << 17

var plainID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// ServiceID is the stable name part of a service's kernel objects (chain
// svc_<id>, maps slots_<id>, sticky_<id>, ...). It is the cluster name
// when that is short and plain, otherwise a cleaned prefix plus a hash of
// the full name, so any config name maps to a valid, unique-enough object
// name and the same name always gives the same objects.
func ServiceID(name string) string {
	if plainID.MatchString(name) {
		return name
	}
	clean := []byte(name)
	for i, c := range clean {
		ok := c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !ok {
			clean[i] = '_'
		}
	}
	if len(clean) > 23 {
		clean = clean[:23]
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("%s_%08x", clean, h.Sum32())
}

// Validate reports every problem of the Spec, each prefixed with where it
// is (services[1] "web": slots[0]: ...). Apply refuses an invalid Spec
// before touching the kernel.
func (s Spec) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !plainID.MatchString(s.table()) {
		add("table: %q: want 1-32 of [A-Za-z0-9_-]", s.Table)
	}
	ids := map[string]int{}
	marks := map[uint32]string{}
	type match struct {
		vip   netip.Addr
		port  uint16
		proto string
	}
	matches := map[match]int{}
	for i, svc := range s.Services {
		k := fmt.Sprintf("services[%d] %q", i, svc.Name)
		for _, e := range svc.validate() {
			add("%s: %w", k, e)
		}
		if svc.Name != "" {
			id := ServiceID(svc.Name)
			if j, dup := ids[id]; dup {
				add("%s: name gives the same kernel objects as services[%d] %q", k, j, s.Services[j].Name)
			} else {
				ids[id] = i
			}
		}
		if svc.Mark != 0 {
			if other, dup := marks[svc.Mark]; dup {
				add("%s: mark %#x already used by %s", k, svc.Mark, other)
			} else {
				marks[svc.Mark] = k
			}
		}
		m := match{svc.VIP.Unmap(), svc.Port, svc.Proto}
		if j, dup := matches[m]; dup && svc.VIP.IsValid() {
			add("%s: %s %s already served by services[%d] %q", k, svc.Proto, netip.AddrPortFrom(m.vip, m.port), j, s.Services[j].Name)
		} else {
			matches[m] = i
		}
	}
	if o := s.Outbound; o != nil {
		for _, e := range o.validate() {
			add("outbound: %w", e)
		}
		if other, dup := marks[o.Mark]; dup && o.Mark != 0 {
			add("outbound: mark %#x already used by %s", o.Mark, other)
		}
	}
	return errors.Join(errs...)
}

func (svc Service) validate() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if svc.Name == "" {
		add("name: required")
	}
	if svc.Mark == 0 {
		add("mark: must not be 0 (flows are found and SNATed by it)")
	}
	if !svc.VIP.IsValid() {
		add("vip: required")
	} else if svc.VIP.Is4In6() {
		add("vip: %s: use the plain IPv4 form", svc.VIP)
	}
	v6 := svc.VIP.Is6()
	if svc.Port == 0 {
		add("port: must not be 0")
	}
	if svc.Proto != "tcp" && svc.Proto != "udp" {
		add("proto: %q: want tcp or udp", svc.Proto)
	}
	if svc.Pick < PickRoundRobin || svc.Pick > PickFiveTuple {
		add("pick: %v: unknown", svc.Pick)
	}
	if len(svc.Slots) > maxSlots {
		add("slots: %d entries, at most %d", len(svc.Slots), maxSlots)
	}
	checkAP := func(key string, list []netip.AddrPort) {
		for i, ap := range list {
			switch {
			case !ap.IsValid() || ap.Port() == 0:
				add("%s[%d]: %v: want address:port with a non-zero port", key, i, ap)
			case ap.Addr().Is4In6():
				add("%s[%d]: %s: use the plain IPv4 form", key, i, ap)
			case svc.VIP.IsValid() && ap.Addr().Is6() != v6:
				add("%s[%d]: %s: not the family of vip %s", key, i, ap, svc.VIP)
			}
		}
	}
	checkAP("slots", svc.Slots)
	checkAP("eligible", svc.Eligible)
	ids := map[uint32]netip.AddrPort{}
	for _, ap := range append(slices.Clone(svc.Slots), svc.Eligible...) {
		if other, ok := ids[serverID(ap)]; ok && other != ap {
			add("servers %s and %s have the same 32-bit id; change a port or address", other, ap)
		}
		ids[serverID(ap)] = ap
	}
	if svc.SNAT.IsValid() && svc.VIP.IsValid() && svc.SNAT.Is6() != v6 {
		add("snat: %s: not the family of vip %s", svc.SNAT, svc.VIP)
	}
	for i, p := range svc.Allow {
		switch {
		case !p.IsValid():
			add("allow[%d]: invalid prefix", i)
		case svc.VIP.IsValid() && p.Addr().Is6() != v6:
			add("allow[%d]: %s: not the family of vip %s", i, p, svc.VIP)
		}
	}
	if st := svc.Sticky; st != nil {
		bits := 32
		if v6 {
			bits = 128
		}
		if st.Mask < 0 || st.Mask > bits {
			add("sticky.mask: %d: want 1..%d (0: %d)", st.Mask, bits, bits)
		}
		if st.Timeout < 1e6 {
			add("sticky.timeout: %v: want at least 1ms", st.Timeout)
		}
	}
	return errs
}

func (o Outbound) validate() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if o.InIface == "" || len(o.InIface) > 15 || strings.ContainsAny(o.InIface, "/ \x00") {
		add("in_iface: %q: want an interface name", o.InIface)
	}
	if len(o.Sources) == 0 {
		add("sources: required (the servers' subnets)")
	}
	for i, p := range o.Sources {
		if !p.IsValid() {
			add("sources[%d]: invalid prefix", i)
		}
	}
	if o.Mark == 0 {
		add("mark: must not be 0 (outbound flows are found and SNATed by it)")
	}
	if o.SNAT.Is4In6() {
		add("snat: %s: use the plain IPv4 form", o.SNAT)
	}
	for i, r := range o.Allow {
		if !r.Dest.IsValid() {
			add("allow[%d].dest: invalid prefix", i)
		}
		if r.Proto != "" && r.Proto != "tcp" && r.Proto != "udp" {
			add("allow[%d].proto: %q: want tcp, udp or empty", i, r.Proto)
		}
		for j, p := range r.Ports {
			if p == 0 {
				add("allow[%d].ports[%d]: must not be 0", i, j)
			}
		}
	}
	return errs
}
