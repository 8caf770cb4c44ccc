package nft

import (
	"fmt"
	"net/netip"
	"os/exec"
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
