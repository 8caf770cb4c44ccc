package nft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

const mark1 = 0x7a000001

func webSpec(slots ...netip.AddrPort) Spec {
	return Spec{Services: []Service{{Name: "web", Mark: mark1, VIP: vip4, Port: 80, Proto: "tcp",
		Slots: slots, Eligible: slots}}}
}

func TestNetnsRoundRobinAlternatesAndMarksFlows(t *testing.T) {
	l := newLab(t, true)
	s1, s2 := ap(srv4[0], 8080), ap(srv4[1], 8080)
	serveTCP(t, l.s1, "s1", s1, true)
	serveTCP(t, l.s2, "s2", s2, true)
	l.apply(webSpec(s1, s2))

	var got []string
	for range 6 {
		c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second)
		if c == nil {
			t.Fatal("connection to the VIP dropped")
		}
		if host, _, _ := strings.Cut(c.seen, ":"); host != client4.String() {
			t.Errorf("gateway mode: server saw %s, want the client's address", c.seen)
		}
		got = append(got, c.server)
		c.Close()
	}
	for i := 1; i < len(got); i++ {
		if got[i] == got[i-1] {
			t.Fatalf("round robin did not alternate: %v", got)
		}
	}

	// The flows carry the service's mark in conntrack: replication finds
	// them by it.
	if _, err := exec.LookPath("conntrack"); err == nil {
		out, _ := exec.Command("ip", "netns", "exec", l.lb, "conntrack", "-L", "-m", fmt.Sprint(mark1)).CombinedOutput()
		if n := strings.Count(string(out), "dport=80 "); n < 6 {
			t.Errorf("conntrack -m %#x lists %d flows to port 80, want 6:\n%s", mark1, n, out)
		}
	}
	cnt, err := l.m.Counters()
	if err != nil || cnt["web"][ReasonNoServer] != 0 || len(cnt["web"]) != 3 {
		t.Errorf("Counters = %v, %v; want three zero counters for web", cnt, err)
	}
}

func TestNetnsNoServerDropsAndCounts(t *testing.T) {
	l := newLab(t, true)
	l.apply(webSpec())
	if c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 300*time.Millisecond); c != nil {
		t.Fatalf("with no server, a connection reached %s", c.server)
	}
	cnt, err := l.m.Counters()
	if err != nil || cnt["web"][ReasonNoServer] == 0 {
		t.Fatalf("Counters = %v, %v; want no_server drops", cnt, err)
	}
}

// Two boxes with the same Spec send the same 5-tuple to the same server,
// and a box does so every time.
func TestNetnsFiveTupleHashSameOnBothBoxes(t *testing.T) {
	boxA, boxB := newLab(t, true), newLab(t, true)
	s1, s2 := ap(srv4[0], 8080), ap(srv4[1], 8080)
	spec := Spec{Services: []Service{{Name: "im", Mark: mark1, VIP: vip4, Port: 5222, Proto: "tcp",
		Pick: PickFiveTuple, Seed: 0x5eed, Slots: []netip.AddrPort{s1, s2, s1, s2, s2, s1, s1, s2}}}}
	for _, l := range []*lab{boxA, boxB} {
		serveTCP(t, l.s1, "s1", s1, true)
		serveTCP(t, l.s2, "s2", s2, true)
		l.apply(spec)
	}
	pickOf := func(l *lab, port uint16) string {
		c := dialTCP(t, l.client, ap(client4, port), ap(vip4, 5222), 2*time.Second)
		if c == nil {
			t.Fatalf("connection from port %d dropped", port)
		}
		// The server closes first, so the client's 5-tuple is free again.
		c.rd.ReadString('\n')
		c.Close()
		return c.server
	}
	seen := map[string]int{}
	for port := uint16(41000); port < 41016; port++ {
		a, b := pickOf(boxA, port), pickOf(boxB, port)
		if a != b {
			t.Errorf("source port %d: box A sent it to %s, box B to %s", port, a, b)
		}
		if again := pickOf(boxA, port); again != a {
			t.Errorf("source port %d: box A sent it to %s, then to %s", port, a, again)
		}
		seen[a]++
	}
	if len(seen) != 2 {
		t.Errorf("16 source ports all went to one server: %v", seen)
	}
}

func stickySpec(mask int, slots, eligible []netip.AddrPort) Spec {
	return Spec{Services: []Service{{Name: "web", Mark: mark1, VIP: vip4, Port: 80, Proto: "tcp",
		Slots: slots, Eligible: eligible, Sticky: &Sticky{Mask: mask, Timeout: time.Minute}}}}
}

// Persistence keeps a client on its server across flows and applies,
// moves it when the server leaves Eligible, and can be loaded and
// cleared from user space.
func TestNetnsStickyFollowsEligible(t *testing.T) {
	l := newLab(t, true)
	s1, s2 := ap(srv4[0], 8080), ap(srv4[1], 8080)
	serveTCP(t, l.s1, "s1", s1, true)
	serveTCP(t, l.s2, "s2", s2, true)
	both := []netip.AddrPort{s1, s2}
	l.apply(stickySpec(24, both, both))
	name := map[netip.AddrPort]string{s1: "s1", s2: "s2"}
	addr := map[string]netip.AddrPort{"s1": s1, "s2": s2}
	servers := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second)
			if c == nil {
				t.Fatal("connection dropped")
			}
			got[c.server]++
			c.Close()
		}
		return got
	}
	first := servers(5)
	if len(first) != 1 {
		t.Fatalf("round robin with persistence spread one client: %v", first)
	}
	var home string
	for s := range first {
		home = s
	}
	entries, err := l.m.StickyEntries("web")
	want := netip.MustParsePrefix("198.18.50.0/24")
	if err != nil || len(entries) != 1 || entries[0].Client != want || name[entries[0].Server] != home ||
		entries[0].Expires <= 50*time.Second || entries[0].Expires > time.Minute {
		t.Fatalf("StickyEntries = %+v, %v; want %s -> %s, ~1m left", entries, err, want, home)
	}

	// Re-applying the same spec keeps the entry.
	l.apply(stickySpec(24, both, both))
	if got := servers(3); got[home] != 3 {
		t.Fatalf("after a re-apply: %v, want all on %s", got, home)
	}

	// home goes down: out of the slots and out of Eligible.
	other := "s1"
	if home == "s1" {
		other = "s2"
	}
	rest := []netip.AddrPort{addr[other]}
	l.apply(stickySpec(24, rest, rest))
	if got := servers(3); got[other] != 3 {
		t.Fatalf("%s left Eligible: %v, want all on %s", home, got, other)
	}
	// It comes back: the client stays where persistence now says.
	l.apply(stickySpec(24, both, both))
	if got := servers(4); got[other] != 4 {
		t.Fatalf("%s came back: %v, want the client kept on %s", home, got, other)
	}
	entries, _ = l.m.StickyEntries("web")
	if len(entries) != 1 || name[entries[0].Server] != other {
		t.Fatalf("StickyEntries = %+v, want one entry to %s", entries, other)
	}

	// User space: forget it, then load an entry as the peer would send it.
	if n, err := l.m.DeleteSticky("web", addr[other]); n != 1 || err != nil {
		t.Fatalf("DeleteSticky = %d, %v; want 1", n, err)
	}
	if entries, _ := l.m.StickyEntries("web"); len(entries) != 0 {
		t.Fatalf("after DeleteSticky: %+v", entries)
	}
	err = l.m.AddSticky("web", StickyEntry{Client: netip.MustParsePrefix("198.18.50.77/24"), Server: addr[home], Expires: 30 * time.Second},
		StickyEntry{Client: netip.MustParsePrefix("198.18.99.0/24"), Server: ap(srv4[0], 9999)}) // not eligible: skipped
	if err != nil {
		t.Fatalf("AddSticky: %v", err)
	}
	entries, _ = l.m.StickyEntries("web")
	if len(entries) != 1 || entries[0].Client != want || entries[0].Expires > 30*time.Second || entries[0].Expires < 25*time.Second {
		t.Fatalf("StickyEntries = %+v; want the loaded entry with its 30s", entries)
	}
	if got := servers(4); got[home] != 4 {
		t.Fatalf("after AddSticky to %s: %v", home, got)
	}
	// A new flow refreshes the entry to the service's timeout.
	entries, _ = l.m.StickyEntries("web")
	if len(entries) != 1 || entries[0].Expires < 50*time.Second {
		t.Fatalf("StickyEntries = %+v; want the entry refreshed to ~1m by new flows", entries)
	}
	// Loading an entry the box already has sets its lifetime (the peer's
	// copy is the fresher one on a backup).
	if err := l.m.AddSticky("web", StickyEntry{Client: want, Server: addr[home], Expires: 10 * time.Second}); err != nil {
		t.Fatalf("AddSticky of a present entry: %v", err)
	}
	entries, _ = l.m.StickyEntries("web")
	if len(entries) != 1 || entries[0].Expires > 10*time.Second {
		t.Errorf("StickyEntries = %+v; want the present entry's lifetime set to 10s", entries)
	}
	if _, err := l.m.StickyEntries("nope"); !errors.Is(err, ErrUnknownService) {
		t.Errorf("StickyEntries(nope) = %v, want ErrUnknownService", err)
	}
}

// Services are named by cluster, not position: reordering keeps their
// persistence, removing one takes all its objects and leaves the others.
func TestNetnsRemovingAServiceKeepsTheOthers(t *testing.T) {
	l := newLab(t, true)
	s1, s2 := ap(srv4[0], 8080), ap(srv4[1], 8080)
	serveTCP(t, l.s1, "s1", s1, true)
	serveTCP(t, l.s2, "s2", s2, true)
	both := []netip.AddrPort{s1, s2}
	web := Service{Name: "web", Mark: mark1, VIP: vip4, Port: 80, Proto: "tcp", Slots: both, Eligible: both,
		Sticky: &Sticky{Timeout: time.Minute}}
	old := Service{Name: "old app", Mark: mark1 + 1, VIP: vip4, Port: 81, Proto: "tcp", Slots: both, Eligible: both,
		Sticky: &Sticky{Timeout: time.Minute}, Allow: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}, MaxConns: 9}
	l.apply(Spec{Services: []Service{old, web}})
	for _, port := range []uint16{80, 81} {
		if c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, port), 2*time.Second); c == nil {
			t.Fatalf("port %d dropped", port)
		}
	}
	before, _ := l.m.StickyEntries("web")
	l.apply(Spec{Services: []Service{web}})
	after, _ := l.m.StickyEntries("web")
	if len(before) != 1 || len(after) != 1 || before[0].Server != after[0].Server {
		t.Errorf("web's persistence across removing another service: %+v then %+v", before, after)
	}
	out, _ := l.nft("list", "table", "inet", "tandem")
	if id := ServiceID("old app"); strings.Contains(out, id) {
		t.Errorf("objects of the removed service %s left:\n%s", id, out)
	}
	var derr error
	inNS(t, l.client, func() error {
		c, err := net.DialTimeout("tcp", ap(vip4, 81).String(), 300*time.Millisecond)
		if err == nil {
			c.Close()
		}
		derr = err
		return nil
	})
	if derr == nil {
		t.Error("the removed service still forwards")
	}
	if c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second); c == nil {
		t.Error("the remaining service stopped")
	}
}

// A flow of Tandem's reports its birth, its establishment, the start of
// its close and its end, not every TCP state in between: each event costs
// the node a read and the peer a write, and the peer needs no more to carry
// the flow on or to let it expire soon after it closed.
func TestNetnsFlowEventsSkipTheStatesBetween(t *testing.T) {
	l := newLab(t, true)
	if _, err := exec.LookPath("conntrack"); err != nil {
		t.Skip("conntrack(8) not installed")
	}
	s1 := ap(srv4[0], 8080)
	serveTCP(t, l.s1, "s1", s1, false)
	l.apply(webSpec(s1))

	for _, tc := range []struct {
		name  string
		close func(c *conn)
		want  []string
	}{
		// FIN from the client: CLOSE_WAIT (the server's ACK) and
		// TIME_WAIT (the client's last ACK) are not reported.
		{"fin", func(c *conn) { c.Close() }, []string{"[NEW] SYN_SENT", "[UPDATE] ESTABLISHED", "[UPDATE] FIN_WAIT", "[UPDATE] LAST_ACK"}},
		{"rst", func(c *conn) { c.Conn.(*net.TCPConn).SetLinger(0); c.Close() }, []string{"[NEW] SYN_SENT", "[UPDATE] ESTABLISHED", "[UPDATE] CLOSE"}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ev := exec.CommandContext(ctx, "ip", "netns", "exec", l.lb, "conntrack", "-E", "-p", "tcp", "--mark", fmt.Sprint(mark1))
		var out bytes.Buffer
		ev.Stdout, ev.Stderr = &out, &out
		if err := ev.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // conntrack -E subscribes

		c := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second)
		if c == nil {
			t.Fatal("connection to the VIP dropped")
		}
		if got := c.echo(t, "hi"); got != "s1 echo hi" {
			t.Fatalf("echo through the VIP: %q", got)
		}
		tc.close(c)
		time.Sleep(500 * time.Millisecond)
		cancel()
		ev.Wait()

		var kinds []string
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.Contains(line, "dport=80 ") {
				kinds = append(kinds, f[0]+" "+f[4])
			}
		}
		if !slices.Equal(kinds, tc.want) {
			t.Errorf("%s: events of one connection = %q, want %q\n%s", tc.name, kinds, tc.want, out.String())
		}
	}
}
