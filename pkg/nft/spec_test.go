package nft

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func validService() Service {
	s := netip.MustParseAddrPort("198.19.50.21:8080")
	return Service{Name: "web", Mark: 0x7a000001, VIP: netip.MustParseAddr("198.18.50.100"), Port: 80, Proto: "tcp",
		Slots: []netip.AddrPort{s}, Eligible: []netip.AddrPort{s}}
}

func TestValidate(t *testing.T) {
	v6 := netip.MustParseAddrPort("[2001:2::21]:80")
	cases := []struct {
		name string
		edit func(*Spec)
		want []string // substrings of the error; none: valid
	}{
		{"valid", func(*Spec) {}, nil},
		{"empty spec", func(s *Spec) { s.Services = nil }, nil},
		{"bad table", func(s *Spec) { s.Table = "tan dem" }, []string{`table: "tan dem"`}},
		{"no name", func(s *Spec) { s.Services[0].Name = "" }, []string{`services[0] "": name: required`}},
		{"zero mark", func(s *Spec) { s.Services[0].Mark = 0 }, []string{"mark: must not be 0"}},
		{"no vip", func(s *Spec) { s.Services[0].VIP = netip.Addr{} }, []string{"vip: required"}},
		{"mapped vip", func(s *Spec) { s.Services[0].VIP = netip.MustParseAddr("::ffff:198.18.50.100") }, []string{"plain IPv4 form"}},
		{"zero port", func(s *Spec) { s.Services[0].Port = 0 }, []string{"port: must not be 0"}},
		{"proto", func(s *Spec) { s.Services[0].Proto = "sctp" }, []string{`proto: "sctp"`}},
		{"pick", func(s *Spec) { s.Services[0].Pick = 9 }, []string{"pick: Pick(9)"}},
		{"slot family", func(s *Spec) { s.Services[0].Slots = append(s.Services[0].Slots, v6) },
			[]string{"slots[1]: [2001:2::21]:80: not the family of vip 198.18.50.100"}},
		{"slot port 0", func(s *Spec) { s.Services[0].Slots[0] = netip.MustParseAddrPort("198.19.50.21:0") },
			[]string{"slots[0]", "non-zero port"}},
		{"eligible family", func(s *Spec) { s.Services[0].Eligible = []netip.AddrPort{v6} }, []string{"eligible[0]"}},
		{"snat family", func(s *Spec) { s.Services[0].SNAT = netip.MustParseAddr("2001:2::1") }, []string{"snat: 2001:2::1"}},
		{"allow family", func(s *Spec) { s.Services[0].Allow = []netip.Prefix{netip.MustParsePrefix("2001:2::/48")} },
			[]string{"allow[0]: 2001:2::/48"}},
		{"sticky mask", func(s *Spec) { s.Services[0].Sticky = &Sticky{Mask: 33, Timeout: time.Minute} }, []string{"sticky.mask: 33"}},
		{"sticky timeout", func(s *Spec) { s.Services[0].Sticky = &Sticky{Timeout: time.Microsecond} }, []string{"sticky.timeout"}},
		{"v6 sticky mask 128", func(s *Spec) {
			s.Services[0] = validService()
			s.Services[0].VIP = netip.MustParseAddr("2001:2::100")
			s.Services[0].Slots = []netip.AddrPort{v6}
			s.Services[0].Eligible = nil
			s.Services[0].Sticky = &Sticky{Mask: 128, Timeout: time.Second}
		}, nil},
		{"duplicate mark", func(s *Spec) {
			b := validService()
			b.Name, b.Port = "b", 81
			s.Services = append(s.Services, b)
		}, []string{`services[1] "b": mark 0x7a000001 already used by services[0] "web"`}},
		{"duplicate match", func(s *Spec) {
			b := validService()
			b.Name, b.Mark = "b", 2
			s.Services = append(s.Services, b)
		}, []string{`tcp 198.18.50.100:80 already served by services[0] "web"`}},
		{"same port other proto", func(s *Spec) {
			b := validService()
			b.Name, b.Mark, b.Proto = "b", 2, "udp"
			s.Services = append(s.Services, b)
		}, nil},
		{"names with the same id", func(s *Spec) {
			b := validService()
			b.Name, b.Mark, b.Port = "web", 2, 81
			s.Services = append(s.Services, b)
		}, []string{"same kernel objects"}},
		{"outbound", func(s *Spec) {
			s.Outbound = &Outbound{InIface: "eth1", Mark: 9, Sources: []netip.Prefix{netip.MustParsePrefix("198.19.50.0/24")},
				Allow: []OutRule{{Dest: netip.MustParsePrefix("0.0.0.0/0"), Ports: []uint16{53}}}}
		}, nil},
		{"outbound problems", func(s *Spec) {
			s.Outbound = &Outbound{InIface: "a-very-long-interface", Mark: 0x7a000001,
				Allow: []OutRule{{Proto: "icmp", Ports: []uint16{0}}}}
		}, []string{"outbound: in_iface", "outbound: sources: required", "outbound: mark 0x7a000001 already used",
			"outbound: allow[0].dest", `allow[0].proto: "icmp"`, "allow[0].ports[0]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := Spec{Services: []Service{validService()}}
			c.edit(&s)
			err := s.Validate()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestServiceID(t *testing.T) {
	for name, want := range map[string]string{"web": "web", "dns-53_udp": "dns-53_udp"} {
		if got := ServiceID(name); got != want {
			t.Errorf("ServiceID(%q) = %q, want %q", name, got, want)
		}
	}
	long := strings.Repeat("x", 40)
	ids := map[string]string{}
	for _, name := range []string{"web app", "web/app", "wéb", long, long + "y", "a.b"} {
		id := ServiceID(name)
		if !plainID.MatchString(id) {
			t.Errorf("ServiceID(%q) = %q: not a plain id", name, id)
		}
		if other, dup := ids[id]; dup {
			t.Errorf("ServiceID(%q) = ServiceID(%q) = %q", name, other, id)
		}
		ids[id] = name
		if ServiceID(name) != id {
			t.Errorf("ServiceID(%q) not stable", name)
		}
	}
}

func TestMergePrefixes(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	cases := []struct {
		in   []netip.Prefix
		want []addrRange
	}{
		{[]netip.Prefix{p("198.19.1.0/24"), p("198.18.0.0/15")}, []addrRange{{a("198.18.0.0"), a("198.19.255.255")}}},
		{[]netip.Prefix{p("198.18.50.16/28"), p("198.18.50.0/28"), p("198.18.50.64/26")},
			[]addrRange{{a("198.18.50.0"), a("198.18.50.31")}, {a("198.18.50.64"), a("198.18.50.127")}}},
		{[]netip.Prefix{p("198.18.50.7/24")}, []addrRange{{a("198.18.50.0"), a("198.18.50.255")}}},
		{[]netip.Prefix{p("0.0.0.0/0"), p("1.2.3.4/32")}, []addrRange{{a("0.0.0.0"), a("255.255.255.255")}}},
		{[]netip.Prefix{p("255.255.255.255/32"), p("255.255.255.254/32")}, []addrRange{{a("255.255.255.254"), a("255.255.255.255")}}},
		{[]netip.Prefix{p("2001:2::/48"), p("2001:2:0:50::/64"), p("2001:3::/48")},
			[]addrRange{{a("2001:2::"), a("2001:2:0:ffff:ffff:ffff:ffff:ffff")}, {a("2001:3::"), a("2001:3:0:ffff:ffff:ffff:ffff:ffff")}}},
	}
	for _, c := range cases {
		if got := mergePrefixes(c.in); !slices.Equal(got, c.want) {
			t.Errorf("mergePrefixes(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestAddrHelpers(t *testing.T) {
	for _, s := range []string{"198.19.50.21:8080", "[2001:2::21]:53"} {
		ap := netip.MustParseAddrPort(s)
		b := apBytes(ap)
		if back, ok := apFromBytes(b); !ok || back != ap {
			t.Errorf("apFromBytes(apBytes(%s)) = %v, %v", ap, back, ok)
		}
		if n := len(b); n != 8 && n != 20 {
			t.Errorf("apBytes(%s) has %d bytes; want the padded concatenation", ap, n)
		}
	}
	if got := maskBytes(4, 20); !slices.Equal(got, []byte{255, 255, 240, 0}) {
		t.Errorf("maskBytes(4, 20) = %v", got)
	}
	if got := maskAddr(netip.MustParseAddr("198.18.50.77"), 24); got != netip.MustParseAddr("198.18.50.0") {
		t.Errorf("maskAddr = %v", got)
	}
	a, b := netip.MustParseAddrPort("198.19.50.21:8080"), netip.MustParseAddrPort("198.19.50.21:8081")
	if serverID(a) == serverID(b) || serverID(a) != serverID(a) {
		t.Error("serverID not a stable function of address and port")
	}
}

func TestPlan(t *testing.T) {
	have := tableState{
		Chains:   []string{"prerouting", "postrouting", "svc_web", "svc_old", "forward"},
		Sets:     map[string]string{"slots_web": "A", "stk_web_1": "S", "stk_web_2": "S", "stk_old_1": "S", "allow_web": "I4", "conns_web_5": "C"},
		Counters: []string{"1:drop_no_server_web", "1:drop_no_server_old"},
	}
	p := makePlan(have,
		[]string{"prerouting", "postrouting", "svc_web", "svc_new"},
		[]setWant{{"slots_web", "A", false}, {"stk_web_1", "S", true}, {"allow_web", "I6", false}, {"slots_new", "A", false}, {"conns_web_6", "C", true}},
		[]string{"1:drop_no_server_web", "1:drop_no_server_new"})
	if want := []string{"prerouting", "postrouting", "svc_web"}; !slices.Equal(p.FlushChains, want) {
		t.Errorf("FlushChains = %v, want %v", p.FlushChains, want)
	}
	if !slices.Equal(p.NewChains, []string{"svc_new"}) || !slices.Equal(p.DelChains, []string{"svc_old", "forward"}) {
		t.Errorf("NewChains = %v, DelChains = %v", p.NewChains, p.DelChains)
	}
	want := map[string]setAction{"slots_web": setRefill, "stk_web_1": setKeep, "allow_web": setRecreate,
		"slots_new": setCreate, "conns_web_6": setCreate}
	for name, a := range want {
		if p.Sets[name] != a {
			t.Errorf("set %s: %v, want %v", name, p.Sets[name], a)
		}
	}
	// A server that left Eligible loses its persistence set; an old limit
	// loses its count.
	if want := []string{"conns_web_5", "stk_old_1", "stk_web_2"}; !slices.Equal(p.DelSets, want) {
		t.Errorf("DelSets = %v, want %v", p.DelSets, want)
	}
	if !slices.Equal(p.NewCounters, []string{"1:drop_no_server_new"}) || !slices.Equal(p.DelCounters, []string{"1:drop_no_server_old"}) {
		t.Errorf("NewCounters = %v, DelCounters = %v", p.NewCounters, p.DelCounters)
	}
}
