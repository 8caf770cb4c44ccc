package nft

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

func (r *rendered) set(name string) *renderedSet {
	for i := range r.sets {
		if r.sets[i].set.Name == name {
			return &r.sets[i]
		}
	}
	return nil
}

func (r *rendered) chainNames() []string {
	var out []string
	for _, c := range r.chains {
		out = append(out, c.Name)
	}
	return out
}

func (r *rendered) rulesOf(chain string) [][]expr.Any {
	var out [][]expr.Any
	for _, rule := range r.rules {
		if rule.Chain.Name == chain {
			out = append(out, rule.Exprs)
		}
	}
	return out
}

func find[T expr.Any](exprs []expr.Any) []T {
	var out []T
	for _, e := range exprs {
		if x, ok := e.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

func TestRenderStickyService(t *testing.T) {
	s1, s2, s3 := netip.MustParseAddrPort("198.19.50.21:8080"), netip.MustParseAddrPort("198.19.50.22:8080"), netip.MustParseAddrPort("198.19.50.23:8080")
	svc := validService()
	svc.Slots = []netip.AddrPort{s1, s2, s1}
	svc.Eligible = []netip.AddrPort{s1, s3, s1} // s2 is draining: slots only; s3 persistence only
	svc.Sticky = &Sticky{Mask: 24, Timeout: time.Minute}
	svc.Allow = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("255.255.255.255/32")}
	svc.MaxConns = 100
	svc.SNAT = netip.MustParseAddr("198.19.50.2")
	r := render(Spec{Services: []Service{svc}})

	wantChains := []string{"prerouting", "postrouting", "svc_web", serverChain("web", s1), serverChain("web", s2), "flowevents"}
	if got := r.chainNames(); !slices.Equal(got, wantChains) {
		t.Errorf("chains = %v, want %v", got, wantChains)
	}
	slots := r.set("slots_web")
	if slots == nil || !slots.set.IsMap || slots.dynamic || len(slots.elems) != 3 {
		t.Fatalf("slots_web = %+v", slots)
	}
	for i, want := range []netip.AddrPort{s1, s2, s1} {
		if v := slots.elems[i].VerdictData; v == nil || v.Kind != expr.VerdictGoto || v.Chain != serverChain("web", want) {
			t.Errorf("slot %d -> %+v, want goto %s", i, v, serverChain("web", want))
		}
	}
	for _, ap := range []netip.AddrPort{s1, s3} {
		if s := r.set(stickySet("web", ap)); s == nil || !s.dynamic || !s.set.HasTimeout || s.set.Size != DefaultStickyEntries {
			t.Errorf("persistence set of %s = %+v", ap, s)
		}
	}
	if r.set(stickySet("web", s2)) != nil {
		t.Error("a server outside Eligible has a persistence set")
	}
	if s := r.set("conns_web_100"); s == nil || !s.dynamic {
		t.Errorf("conns set = %+v", s)
	}
	// 198.18.0.0/15 is a start and an end element; the range ending at
	// the top of the address space has no end element.
	allow := r.set("allow_web")
	if allow == nil || !allow.set.Interval || len(allow.elems) != 3 || !allow.elems[1].IntervalEnd || allow.elems[2].IntervalEnd {
		t.Errorf("allow_web = %+v", allow)
	}

	// svc_web: allow, mark, count, one rule per eligible server, the
	// slot pick, the no-server drop.
	rules := r.rulesOf("svc_web")
	if len(rules) != 7 {
		t.Fatalf("svc_web has %d rules, want 7", len(rules))
	}
	for i, ap := range []netip.AddrPort{s1, s3} {
		rule := rules[3+i]
		lk := find[*expr.Lookup](rule)
		ds := find[*expr.Dynset](rule)
		if len(lk) != 1 || lk[0].SetName != stickySet("web", ap) || len(ds) != 1 || ds[0].Timeout != time.Minute ||
			ds[0].Operation != dynsetOpUpdate || len(find[*expr.NAT](rule)) != 1 {
			t.Errorf("persistence rule for %s: %v", ap, rule)
		}
		if bw := find[*expr.Bitwise](rule); len(bw) != 1 || !slices.Equal(bw[0].Mask, []byte{255, 255, 255, 0}) {
			t.Errorf("persistence key not masked to /24: %v", bw)
		}
	}
	// The server chain of s1 remembers the client; s2's (not eligible) does not.
	if rs := r.rulesOf(serverChain("web", s1)); len(rs) != 2 || len(find[*expr.Dynset](rs[0])) != 1 {
		t.Errorf("chain of s1: %v", rs)
	}
	if rs := r.rulesOf(serverChain("web", s2)); len(rs) != 1 || len(find[*expr.Dynset](rs[0])) != 0 {
		t.Errorf("chain of s2: %v", rs)
	}
	if post := r.rulesOf("postrouting"); len(post) != 1 || len(find[*expr.NAT](post[0])) != 1 {
		t.Errorf("postrouting: %v", post)
	}
	if !slices.Equal(r.counters, []string{"drop_allow_web", "drop_max_conns_web", "drop_no_server_web"}) {
		t.Errorf("counters = %v", r.counters)
	}
}

// IPv6: the address takes four registers, so the port of a DNAT and the
// components of the five-tuple hash sit further up.
func TestRenderIPv6Registers(t *testing.T) {
	srv := netip.MustParseAddrPort("[2001:2::21]:8080")
	svc := Service{Name: "v6", Mark: 1, VIP: netip.MustParseAddr("2001:2::100"), Port: 80, Proto: "udp",
		Pick: PickFiveTuple, Seed: 42, Slots: []netip.AddrPort{srv}}
	r := render(Spec{Services: []Service{svc}})
	dn := r.rulesOf(serverChain("v6", srv))
	if len(dn) != 1 {
		t.Fatalf("server chain: %v", dn)
	}
	nat := find[*expr.NAT](dn[0])
	imm := find[*expr.Immediate](dn[0])
	if len(nat) != 1 || nat[0].RegAddrMin != r0 || nat[0].RegProtoMin != r0+4 || nat[0].Family != 10 ||
		len(imm) != 2 || len(imm[0].Data) != 16 || imm[1].Register != r0+4 || !slices.Equal(imm[1].Data, []byte{0x1f, 0x90}) {
		t.Errorf("IPv6 DNAT: nat %+v, immediates %+v", nat, imm)
	}
	pick := r.rulesOf("svc_v6")[1]
	var regs []uint32
	for _, p := range find[*expr.Payload](pick) {
		regs = append(regs, p.DestRegister)
	}
	h := find[*expr.Hash](pick)
	if !slices.Equal(regs, []uint32{r0, r0 + 4, r0 + 5, r0 + 9}) || len(h) != 1 || h[0].Length != 40 || h[0].Seed != 42 || h[0].Modulus != 1 {
		t.Errorf("five-tuple hash: payload registers %v, hash %+v", regs, h)
	}
}

func TestRenderNoServersAndOutbound(t *testing.T) {
	svc := validService()
	svc.Slots, svc.Eligible = nil, nil
	spec := Spec{Table: "t2", Services: []Service{svc}}
	r := render(spec)
	if r.table.Name != "t2" || r.set("slots_web") != nil || len(r.rulesOf("svc_web")) != 2 {
		t.Errorf("no slots: table %s, sets %d, svc rules %v", r.table.Name, len(r.sets), r.rulesOf("svc_web"))
	}
	if slices.Contains(r.chainNames(), "forward") {
		t.Error("forward chain without an Outbound")
	}
	spec.Outbound = &Outbound{InIface: "eth1", Mark: 9, SNAT: netip.MustParseAddr("198.18.50.100"),
		Sources: []netip.Prefix{netip.MustParsePrefix("198.19.50.0/24"), netip.MustParsePrefix("2001:2::/64")},
		Allow: []OutRule{{Dest: netip.MustParsePrefix("0.0.0.0/0"), Ports: []uint16{53, 53}},
			{Dest: netip.MustParsePrefix("2001:db8::/32")}}}
	r = render(spec)
	var fwd *nftables.Chain
	for _, c := range r.chains {
		if c.Name == "forward" {
			fwd = c
		}
	}
	if fwd == nil || fwd.Type != nftables.ChainTypeFilter || *fwd.Hooknum != *nftables.ChainHookForward || *fwd.Policy != nftables.ChainPolicyAccept {
		t.Fatalf("forward chain = %+v", fwd)
	}
	// est/rel, dnat, one jump per source prefix.
	if n := len(r.rulesOf("forward")); n != 4 {
		t.Errorf("forward has %d rules, want 4", n)
	}
	// port 53 once for tcp and once for udp, the v6 destination, the drop.
	out := r.rulesOf("outbound")
	if len(out) != 4 || len(find[*expr.Objref](out[3])) != 1 {
		t.Errorf("outbound rules: %v", out)
	}
	if !slices.Contains(r.counters, counterDenied) {
		t.Errorf("counters = %v", r.counters)
	}
}

func TestShapeIgnoresContent(t *testing.T) {
	a := &nftables.Set{Name: "a", Dynamic: true, HasTimeout: true, KeyType: nftables.TypeIPAddr, Size: 10}
	b := &nftables.Set{Name: "b", Dynamic: true, HasTimeout: true, KeyType: nftables.TypeIPAddr, Size: 10, Comment: "x"}
	c := &nftables.Set{Name: "a", Dynamic: true, HasTimeout: true, KeyType: nftables.TypeIP6Addr, Size: 10}
	if shape(a) != shape(b) || shape(a) == shape(c) || !strings.Contains(shape(a), "size=10") {
		t.Errorf("shape: %q %q %q", shape(a), shape(b), shape(c))
	}
	// A slot table as rendered and as google/nftables reads it back.
	want := &nftables.Set{IsMap: true, KeyType: nftables.TypeMark, DataType: nftables.TypeVerdict}
	read := &nftables.Set{IsMap: true, KeyType: nftables.TypeVerdict, DataType: nftables.SetDatatype{Bytes: 16}}
	if shape(want) != shape(read) {
		t.Errorf("verdict map shapes differ: %q, %q", shape(want), shape(read))
	}
}
