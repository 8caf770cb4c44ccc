package nft

import (
	"errors"
	"fmt"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestNetnsAllowDropsOthers(t *testing.T) {
	l := newLab(t, true)
	s1 := ap(srv4[0], 8080)
	serveTCP(t, l.s1, "s1", s1, true)
	spec := webSpec(s1)
	spec.Services[0].Allow = []netip.Prefix{netip.MustParsePrefix("198.18.50.128/25"), netip.MustParsePrefix("198.19.200.0/24")}
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
	s1 := ap(srv4[0], 8080)
	serveTCP(t, l.s1, "s1", s1, false)
	l.apply(webSpec(s1))
	c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second)
	if c == nil {
		t.Fatal("flow dropped")
	}
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
	// Kernel behaviour the caller must know: with the last nat chain gone
	// the NAT hooks go too, and established flows are no longer
	// translated: the box answers the client's next segment with a reset.
	c.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c, "after remove\n")
	if line, err := c.rd.ReadString('\n'); err == nil {
		t.Errorf("an established flow still works after Remove (%q): update Remove's doc", line)
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

// Server-initiated connections: an allowed destination passes (SNATed to
// the front VIP and marked), anything else is dropped and counted, and
// the forward chain leaves the DNATed service flows alone.
func TestNetnsOutboundPolicy(t *testing.T) {
	l := newLab(t, true)
	s1 := ap(srv4[0], 8080)
	serveTCP(t, l.s1, "s1", s1, true)
	serveTCP(t, l.client, "ext", ap(client4, 7001), true)
	serveTCP(t, l.client, "ext", ap(client4, 7002), true)
	serveTCP(t, l.client, "ext", ap(client6, 7001), true)
	const outMark = 0x7a0000ff
	spec := webSpec(s1)
	spec.Outbound = &Outbound{InIface: "eth1", Mark: outMark, SNAT: vip4,
		Sources: []netip.Prefix{netip.MustParsePrefix("198.19.50.0/24"), netip.MustParsePrefix("2001:2:0:51::/64")},
		Allow:   []OutRule{{Dest: netip.MustParsePrefix("198.18.50.0/28"), Proto: "tcp", Ports: []uint16{7001, 443}}}}
	l.apply(spec)

	c := dialTCP(t, l.s1, netip.AddrPort{}, ap(client4, 7001), 2*time.Second)
	if c == nil {
		t.Fatal("allowed outbound connection dropped")
	}
	if host, _, _ := strings.Cut(c.seen, ":"); host != vip4.String() {
		t.Errorf("outside saw %s, want the SNAT address %s", c.seen, vip4)
	}
	if c := dialTCP(t, l.s1, netip.AddrPort{}, ap(client4, 7002), 300*time.Millisecond); c != nil {
		t.Error("outbound connection to a port not allowed passed")
	}
	if c := dialTCP(t, l.s1, netip.AddrPort{}, ap(client6, 7001), 300*time.Millisecond); c != nil {
		t.Error("outbound IPv6 connection not allowed passed")
	}
	cnt, _ := l.m.Counters()
	if cnt[OutboundCounters][ReasonDenied] < 2 {
		t.Errorf("Counters = %v; want outbound denials", cnt)
	}
	// Service flows (DNATed, gateway mode) still pass the forward chain.
	if c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second); c == nil || c.server != "s1" {
		t.Fatalf("service flow with an outbound policy: %+v", c)
	}
	if _, err := exec.LookPath("conntrack"); err == nil {
		out, _ := exec.Command("ip", "netns", "exec", l.lb, "conntrack", "-L", "-m", fmt.Sprint(outMark)).CombinedOutput()
		if !strings.Contains(string(out), "dport=7001 ") {
			t.Errorf("the allowed outbound flow has no mark %#x in conntrack:\n%s", outMark, out)
		}
	}
	// Dropping the policy removes the forward chain: all forwarding is
	// left alone again (without SNAT, the outside needs a route back).
	run(t, "ip", "-n", l.client, "route", "add", "198.19.50.0/24", "via", "198.18.50.1")
	spec.Outbound = nil
	l.apply(spec)
	if out, _ := l.nft("list", "table", "inet", "tandem"); strings.Contains(out, "chain forward") {
		t.Errorf("forward chain left without an Outbound:\n%s", out)
	}
	if c := dialTCP(t, l.s1, netip.AddrPort{}, ap(client4, 7002), 2*time.Second); c == nil {
		t.Error("without a policy, server-initiated traffic is dropped")
	}
}

// MaxConns counts live flows in conntrack and the count survives an apply.
func TestNetnsMaxConnsSurvivesApply(t *testing.T) {
	l := newLab(t, true)
	s1, s2 := ap(srv4[0], 8080), ap(srv4[1], 8080)
	serveTCP(t, l.s1, "s1", s1, false)
	serveTCP(t, l.s2, "s2", s2, false)
	spec := webSpec(s1)
	spec.Services[0].MaxConns = 2
	l.apply(spec)
	c1 := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second)
	c2 := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second)
	if c1 == nil || c2 == nil {
		t.Fatal("flows under the limit dropped")
	}
	if c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 300*time.Millisecond); c != nil {
		t.Fatal("a third flow passed a limit of 2")
	}
	spec.Services[0].Slots = []netip.AddrPort{s2}
	l.apply(spec)
	if c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 300*time.Millisecond); c != nil {
		t.Fatalf("after an apply, a third flow passed a limit of 2 (to %s): the count was lost", c.server)
	}
	if cnt, _ := l.m.Counters(); cnt["web"][ReasonMaxConns] == 0 {
		t.Errorf("Counters = %v; want max_conns drops", cnt)
	}
	c1.Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 300*time.Millisecond); c != nil {
			if c.server != "s2" {
				t.Errorf("new flow went to %s, want s2", c.server)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a flow closed, yet no new flow is admitted")
		}
	}
	if got := c2.echo(t, "still"); got != "s1 echo still" {
		t.Errorf("held flow: %q", got)
	}
}

// A Maglev-sized slot table goes in one transaction (several messages)
// and is replaced whole.
func TestNetnsLargeSlotTable(t *testing.T) {
	l := newLab(t, true)
	s1, s2 := ap(srv4[0], 8080), ap(srv4[1], 8080)
	serveTCP(t, l.s1, "s1", s1, true)
	serveTCP(t, l.s2, "s2", s2, true)
	const n = 65537
	slots := make([]netip.AddrPort, n)
	for i := range slots {
		slots[i] = s1
		if i%2 == 1 {
			slots[i] = s2
		}
	}
	spec := Spec{Services: []Service{{Name: "im", Mark: mark1, VIP: vip4, Port: 80, Proto: "tcp",
		Pick: PickFiveTuple, Seed: 7, Slots: slots}}}
	start := time.Now()
	l.apply(spec)
	t.Logf("apply of %d slots: %v", n, time.Since(start))
	seen := map[string]int{}
	for range 12 {
		if c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second); c != nil {
			seen[c.server]++
		}
	}
	if seen["s1"] == 0 || seen["s2"] == 0 || seen["s1"]+seen["s2"] != 12 {
		t.Fatalf("12 flows over the large table: %v", seen)
	}
	for i := range slots {
		slots[i] = s2
	}
	start = time.Now()
	l.apply(spec)
	t.Logf("re-apply of %d slots: %v", n, time.Since(start))
	for range 4 {
		if c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second); c == nil || c.server != "s2" {
			t.Fatalf("after replacing the table: %+v, want s2", c)
		}
	}
}

// A transaction the kernel refuses changes nothing: the previous ruleset,
// its persistence entries and its flows stay; a first apply that fails
// leaves no table.
func TestNetnsFailedApplyChangesNothing(t *testing.T) {
	l := newLab(t, true)
	s1, s2 := ap(srv4[0], 8080), ap(srv4[1], 8080)
	serveTCP(t, l.s1, "s1", s1, false)
	serveTCP(t, l.s2, "s2", s2, false)
	one := []netip.AddrPort{s1}
	l.apply(stickySpec(32, one, one))
	c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second)
	if c == nil {
		t.Fatal("flow dropped")
	}
	before, _ := l.nft("-s", "list", "chains")
	broken := func(r *rendered) {
		r.rules = append(r.rules, &nftables.Rule{Table: r.table, Chain: r.chains[0],
			Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: "no_such_chain"}}})
	}
	l.m.mutate = broken
	two := []netip.AddrPort{s2}
	if err := l.m.Apply(stickySpec(32, two, two)); err == nil {
		t.Fatal("Apply with a rule jumping nowhere succeeded")
	}
	if after, _ := l.nft("-s", "list", "chains"); after != before {
		t.Errorf("chains changed by a failed apply:\n%s\nthen\n%s", before, after)
	}
	if e, _ := l.m.StickyEntries("web"); len(e) != 1 || e[0].Server != s1 {
		t.Errorf("StickyEntries after a failed apply = %+v", e)
	}
	if got := c.echo(t, "on"); got != "s1 echo on" {
		t.Errorf("flow after a failed apply: %q", got)
	}
	if c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second); c == nil || c.server != "s1" {
		t.Errorf("new flow after a failed apply: %+v, want s1 as before", c)
	}

	c.Close()
	l.m.mutate = nil
	if err := l.m.Remove(); err != nil {
		t.Fatal(err)
	}
	l.m.mutate = broken
	if err := l.m.Apply(stickySpec(32, two, two)); err == nil {
		t.Fatal("Apply with a rule jumping nowhere succeeded")
	}
	if ok, err := l.m.Exists(); ok || err != nil {
		t.Errorf("after a failed first apply: Exists = %v, %v; want no table", ok, err)
	}
}

// Everything the package writes can be listed by nft(8) (1.0.6 aborts on
// some register layouts; the rules are built to avoid them), and the
// start-up probe passes beside our own table.
func TestNetnsNftListsFullRuleset(t *testing.T) {
	l := newLab(t, true)
	spec := probeSpec(DefaultTable)
	spec.Services[1].Sticky = &Sticky{Mask: 64, Timeout: time.Minute}
	spec.Services[1].Eligible = spec.Services[1].Slots
	l.apply(spec)
	out, err := l.nft("list", "ruleset")
	if err != nil {
		t.Fatalf("nft list ruleset: %v\n%s", err, out)
	}
	for _, want := range []string{"vmap @slots_p4", "update @stk_p6_", "ct count over 10", "snat ip to 198.18.0.101",
		"jhash ip saddr . th sport . ip daddr . th dport mod 1 seed 0x1", "ip6 saddr & ffff:ffff:ffff:ffff::"} {
		if !strings.Contains(out, want) {
			t.Errorf("listing lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "(null)") {
		t.Errorf("listing has an expression nft cannot name:\n%s", out)
	}
	if err := l.m.Check(); err != nil {
		t.Errorf("Check beside our own table: %v", err)
	}
	// Every set reads back with the shape it was written with, so a
	// re-apply refills or keeps it instead of recreating it.
	have, err := l.m.state()
	if err != nil {
		t.Fatal(err)
	}
	for _, rs := range render(spec).sets {
		if got, want := have.Sets[rs.set.Name], shape(rs.set); got != want {
			t.Errorf("set %s reads back as %q, written as %q", rs.set.Name, got, want)
		}
	}
	if out, _ := l.nft("list", "tables"); strings.Contains(out, "probe") {
		t.Errorf("the probe left a table:\n%s", out)
	}
}
