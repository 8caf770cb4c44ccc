package nft

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestNetnsAllowDropsOthers(t *testing.T) {
	l := newLab(t, true)
	s1 := ap(srv4[0], 8080)
	serveTCP(t, l.s1, "s1", s1, true)
	spec := webSpec(s1)
	spec.Services[0].Allow = []netip.Prefix{netip.MustParsePrefix("198.18.50.128/25"), netip.MustParsePrefix("10.0.0.0/8")}
	l.apply(spec)
	if c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 300*time.Millisecond); c != nil {
		t.Fatalf("client outside allow reached %s", c.server)
	}
	cnt, _ := l.m.Counters()
	if cnt["web"][ReasonAllow] == 0 {
		t.Fatalf("Counters = %v; want allow drops", cnt)
	}
	// Overlapping and adjacent prefixes merge into one interval set.
	spec.Services[0].Allow = []netip.Prefix{netip.MustParsePrefix("198.18.50.0/28"), netip.MustParsePrefix("198.18.50.8/29"),
		netip.MustParsePrefix("198.18.50.16/28"), netip.MustParsePrefix("198.18.0.0/16")}
	l.apply(spec)
	if c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second); c == nil {
		t.Fatal("allowed client dropped")
	}
	spec.Services[0].Allow = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	l.apply(spec)
	if c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second); c == nil {
		t.Fatal("0.0.0.0/0 allowed, client dropped")
	}
}

// A re-apply that changes the slot table keeps established flows going
// and the counters counting; new flows take the new table.
func TestNetnsReapplyKeepsEstablishedFlows(t *testing.T) {
	l := newLab(t, true)
	s1, s2 := ap(srv4[0], 8080), ap(srv4[1], 8080)
	serveTCP(t, l.s1, "s1", s1, false)
	serveTCP(t, l.s2, "s2", s2, false)
	l.apply(webSpec())
	dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 200*time.Millisecond) // counted as no_server
	l.apply(webSpec(s1))
	c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second)
	if c == nil || c.server != "s1" {
		t.Fatalf("first flow: %+v, want s1", c)
	}
	if got := c.echo(t, "one"); got != "s1 echo one" {
		t.Fatalf("echo = %q", got)
	}
	l.apply(webSpec(s2))
	l.apply(webSpec(s2, s2))
	if got := c.echo(t, "two"); got != "s1 echo two" {
		t.Fatalf("established flow after re-apply: echo = %q", got)
	}
	if c2 := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second); c2 == nil || c2.server != "s2" {
		t.Fatalf("new flow after re-apply: %+v, want s2", c2)
	}
	if cnt, _ := l.m.Counters(); cnt["web"][ReasonNoServer] == 0 {
		t.Errorf("Counters = %v: the no_server count did not survive the applies", cnt)
	}
	out, _ := l.nft("list", "table", "inet", "tandem")
	if strings.Contains(out, "srv_web_"+hex8(s1)) {
		t.Errorf("chain of the removed server s1 still there:\n%s", out)
	}
}

func TestNetnsRemoveAndForeignTable(t *testing.T) {
	l := newLab(t, true)
	l.apply(webSpec(ap(srv4[0], 8080)))
	if ok, err := l.m.Exists(); !ok || err != nil {
		t.Fatalf("Exists = %v, %v", ok, err)
	}
	if out, _ := l.nft("list", "table", "inet", "tandem"); !strings.Contains(out, ownerComment) {
		t.Errorf("table has no owner comment:\n%s", out)
	}
	if err := l.m.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if out, _ := l.nft("list", "tables"); strings.Contains(out, "tandem") {
		t.Fatalf("table left after Remove:\n%s", out)
	}
	if err := l.m.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if ok, err := l.m.Exists(); ok || err != nil {
		t.Fatalf("Exists after Remove = %v, %v", ok, err)
	}

	// Someone else's table of the same name, with a comment or without.
	for _, def := range []string{"add table inet tandem\nadd chain inet tandem c\n", `add table inet tandem { comment "mine"; }`} {
		if out, err := l.nftScript(def); err != nil {
			t.Fatalf("nft -f: %v\n%s", err, out)
		}
		if err := l.m.Check(); !errors.Is(err, ErrForeignTable) {
			t.Errorf("Check with a foreign table = %v, want ErrForeignTable", err)
		}
		if err := l.m.Apply(webSpec()); !errors.Is(err, ErrForeignTable) {
			t.Errorf("Apply over a foreign table = %v, want ErrForeignTable", err)
		}
		if err := l.m.Remove(); !errors.Is(err, ErrForeignTable) {
			t.Errorf("Remove of a foreign table = %v, want ErrForeignTable", err)
		}
		if out, _ := l.nft("list", "tables"); !strings.Contains(out, "inet tandem") {
			t.Fatalf("the foreign table was touched:\n%s", out)
		}
		if out, err := l.nft("delete", "table", "inet", "tandem"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	if err := l.m.Check(); err != nil {
		t.Errorf("Check in a clean namespace: %v", err)
	}
}

// Gateway mode over IPv6 and UDP, both families in one table.
func TestNetnsUDPAndIPv6(t *testing.T) {
	l := newLab(t, true)
	u1, u2 := ap(srv4[0], 5353), ap(srv4[1], 5353)
	t1, t2 := ap(srv6[0], 8080), ap(srv6[1], 8080)
	serveUDP(t, l.s1, "s1", u1)
	serveUDP(t, l.s2, "s2", u2)
	serveTCP(t, l.s1, "s1", t1, true)
	serveTCP(t, l.s2, "s2", t2, true)
	l.apply(Spec{Services: []Service{
		{Name: "dns", Mark: mark1, VIP: vip4, Port: 53, Proto: "udp", Slots: []netip.AddrPort{u1, u2}},
		{Name: "web6", Mark: mark1 + 1, VIP: vip6, Port: 80, Proto: "tcp", Slots: []netip.AddrPort{t1, t2},
			Eligible: []netip.AddrPort{t1, t2}, Sticky: &Sticky{Mask: 64, Timeout: time.Minute}},
	}})
	var got []string
	for range 4 {
		a := askUDP(t, l.client, ap(vip4, 53), 2*time.Second)
		if !strings.HasPrefix(a, "s") {
			t.Fatalf("UDP answer %q", a)
		}
		got = append(got, a[:2])
	}
	if got[0] == got[1] || got[1] == got[2] || got[2] == got[3] {
		t.Errorf("UDP round robin did not alternate: %v", got)
	}
	home := ""
	for range 4 {
		c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip6, 80), 2*time.Second)
		if c == nil {
			t.Fatal("IPv6 connection dropped")
		}
		if !strings.HasPrefix(c.seen, "["+client6.String()+"]") {
			t.Errorf("server saw %s, want the client's address", c.seen)
		}
		if home != "" && c.server != home {
			t.Errorf("IPv6 persistence: went to %s then %s", home, c.server)
		}
		home = c.server
	}
	entries, err := l.m.StickyEntries("web6")
	if err != nil || len(entries) != 1 || entries[0].Client != netip.MustParsePrefix("2001:2:0:50::/64") {
		t.Errorf("StickyEntries = %+v, %v", entries, err)
	}
}

// snat mode: the servers have no route back; the pair SNATs to its
// inside address.
func TestNetnsSNATMode(t *testing.T) {
	l := newLab(t, false)
	s1 := ap(srv4[0], 8080)
	serveTCP(t, l.s1, "s1", s1, false)
	spec := webSpec(s1)
	l.apply(spec)
	if c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 300*time.Millisecond); c != nil {
		t.Fatal("without a route back and without SNAT, a connection worked: the lab is wrong")
	}
	spec.Services[0].SNAT = snat4
	l.apply(spec)
	c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second)
	if c == nil {
		t.Fatal("snat mode: connection dropped")
	}
	if host, _, _ := strings.Cut(c.seen, ":"); host != snat4.String() {
		t.Errorf("server saw %s, want the SNAT address %s", c.seen, snat4)
	}
	if got := c.echo(t, "x"); got != "s1 echo x" {
		t.Errorf("echo = %q", got)
	}
}

func hex8(a netip.AddrPort) string {
	const digits = "0123456789abcdef"
	id := serverID(a)
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = digits[id&0xf]
		id >>= 4
	}
	return string(b)
}
