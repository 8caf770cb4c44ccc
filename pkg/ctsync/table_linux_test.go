package ctsync

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/mdlayher/netlink"
)

const (
	testMark = 0x7a000001
	tandem   = 0xffff0000 // Tandem's part of the mark
)

// natRuleset makes conntrack and NAT live in a box, as the nat engine's
// table does; the flows of these tests are written, not forwarded.
const natRuleset = `table ip t {
	chain pre { type nat hook prerouting priority dstnat; }
	chain post { type nat hook postrouting priority srcnat; }
}`

func TestNetnsWriteDumpUpdateDelete(t *testing.T) {
	l := newLab(t, "wr")
	ns := l.ns("box")
	nft(t, ns, natRuleset)
	tb := openTable(t, ns)
	if err := tb.Probe(); err != nil {
		t.Fatalf("Probe: %v", err)
	}

	f := dnatFlow()
	f.Reply.Dst = ap("198.19.60.2:61000") // and SNAT
	if err := tb.Write(f); err != nil {
		t.Fatal(err)
	}
	got := dumpAll(t, tb, testMark, tandem)
	if len(got) != 1 {
		t.Fatalf("dump after Write: %v", got)
	}
	g := got[f.Key()]
	// The kernel built the NAT binding: the reply tuple is the master's,
	// and the NAT status bits are set, which only NAT attributes can do.
	if g.Reply != f.Reply {
		t.Errorf("reply tuple %v, want %v", g.Reply, f.Reply)
	}
	if want := StatusDstNAT | StatusSrcNAT | StatusSeenReply | StatusAssured | StatusConfirmed; g.Status&want != want {
		t.Errorf("status %#x lacks %#x", g.Status, want&^g.Status)
	}
	if g.Mark != f.Mark || g.TCPState != TCPEstablished || g.Timeout < f.Timeout-5 {
		t.Errorf("entry %+v", g)
	}
	if g.TCPFlags[0]&TCPFlagBeLiberal == 0 || g.TCPFlags[1]&TCPFlagBeLiberal == 0 {
		t.Errorf("tcp flags %v: BE_LIBERAL missing", g.TCPFlags)
	}
	if g.TCPWScale != f.TCPWScale {
		t.Errorf("wscale %v, want %v", g.TCPWScale, f.TCPWScale)
	}

	// Update in place: a later event with another state and timeout, and
	// without the ASSURED bit the entry already has (it cannot be cleared).
	u := f
	u.TCPState, u.Timeout, u.Status = TCPFinWait, 100, StatusSeenReply
	if err := tb.Write(u); err != nil {
		t.Fatalf("update: %v", err)
	}
	g = dumpAll(t, tb, testMark, tandem)[f.Key()]
	if g.TCPState != TCPFinWait || g.Timeout > 100 || g.Reply != f.Reply {
		t.Errorf("after update %+v", g)
	}
	// An update event without TCP info keeps the state.
	u.TCPState, u.Timeout = TCPNone, 90
	if err := tb.Write(u); err != nil {
		t.Fatalf("update without state: %v", err)
	}
	if g = dumpAll(t, tb, testMark, tandem)[f.Key()]; g.TCPState != TCPFinWait || g.Timeout > 90 {
		t.Errorf("after stateless update %+v", g)
	}
	// Another binding for the same original tuple replaces the entry.
	r := f
	r.Reply = Tuple{Src: ap("198.19.60.21:7070"), Dst: f.Orig.Src}
	if err := tb.Write(r); err != nil {
		t.Fatalf("rebind: %v", err)
	}
	if g = dumpAll(t, tb, testMark, tandem)[f.Key()]; g.Reply != r.Reply {
		t.Errorf("after rebind reply %v, want %v", g.Reply, r.Reply)
	}
	if st := tb.Stats(); st.Created != 1 || st.Updated != 2 || st.Replaced != 1 || st.WriteErrors != 0 {
		t.Errorf("stats %+v", st)
	}

	if err := tb.Delete(f); err != nil {
		t.Fatal(err)
	}
	if err := tb.Delete(f); err != nil {
		t.Errorf("deleting a missing entry: %v", err)
	}
	if got := dumpAll(t, tb, testMark, tandem); len(got) != 0 {
		t.Errorf("after Delete: %v", got)
	}
}

func TestNetnsConflictAndInvalid(t *testing.T) {
	l := newLab(t, "cf")
	ns := l.ns("box")
	nft(t, ns, natRuleset)
	tb := openTable(t, ns)
	a := dnatFlow()
	if err := tb.Write(a); err != nil {
		t.Fatal(err)
	}
	// b's NATed reply tuple is a's: another client port, same binding.
	b := a
	b.Orig.Src = ap("198.18.60.10:40001")
	if err := tb.Write(b); !errors.Is(err, ErrConflict) {
		t.Errorf("Write of a clashing reply tuple: %v, want ErrConflict", err)
	}
	icmp := a
	icmp.Proto = 1
	if err := tb.Write(icmp); !errors.Is(err, ErrInvalidFlow) {
		t.Errorf("Write of an ICMP flow: %v", err)
	}
}

func TestNetnsDumpFiltersCountsDeleteWhere(t *testing.T) {
	l := newLab(t, "df")
	ns := l.ns("box")
	nft(t, ns, natRuleset)
	tb := openTable(t, ns)

	servers := []netip.AddrPort{ap("198.19.60.20:7070"), ap("198.19.60.21:7070")}
	var v6 Flow
	for i := range 30 {
		f := dnatFlow()
		f.Orig.Src = netip.AddrPortFrom(f.Orig.Src.Addr(), uint16(20000+i))
		f.Reply = Tuple{Src: servers[i%2], Dst: f.Orig.Src}
		switch {
		case i < 10:
			f.Mark = 0x7a000001
		case i < 20:
			f.Mark = 0x7a000002
		default:
			f.Mark = 0x11 // not Tandem's
		}
		if err := tb.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	v6 = Flow{Proto: ProtoUDP, Mark: 0x7a000002, Timeout: 60,
		Orig:  Tuple{Src: ap("[2001:db8::10]:5000"), Dst: ap("[2001:db8::100]:53")},
		Reply: Tuple{Src: ap("[2001:db8:1::20]:5353"), Dst: ap("[2001:db8::10]:5000")}}
	if err := tb.Write(v6); err != nil {
		t.Fatalf("IPv6 Write: %v", err)
	}
	if g := dumpAll(t, tb, 0x7a000002, 0xffffffff)[v6.Key()]; g.Reply != v6.Reply {
		t.Errorf("IPv6 entry %+v", g)
	}

	if n := len(dumpAll(t, tb, 0x7a000000, tandem)); n != 21 {
		t.Errorf("Tandem flows: %d, want 21", n)
	}
	if n := len(dumpAll(t, tb, 0x7a000001, 0xffffffff)); n != 10 {
		t.Errorf("cluster 1 flows: %d, want 10", n)
	}
	// A dump stopped early leaves the socket clean for the next one.
	seen := 0
	if err := tb.Dump(0x7a000000, tandem, func(Flow) bool { seen++; return seen < 3 }); err != nil || seen != 3 {
		t.Errorf("stopped dump: %d, %v", seen, err)
	}
	counts, err := tb.Count(0x7a000000, tandem)
	if err != nil {
		t.Fatal(err)
	}
	want := map[CountKey]int{
		{0x7a000001, servers[0]}: 5, {0x7a000001, servers[1]}: 5,
		{0x7a000002, servers[0]}: 5, {0x7a000002, servers[1]}: 5,
		{0x7a000002, v6.Reply.Src}: 1,
	}
	if len(counts) != len(want) {
		t.Errorf("Count = %v, want %v", counts, want)
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("Count[%v] = %d, want %d", k, counts[k], n)
		}
	}

	n, err := tb.DeleteWhere(0x7a000000, tandem, func(f Flow) bool { return f.Server() == servers[0] })
	if err != nil || n != 10 {
		t.Errorf("DeleteWhere = %d, %v; want 10", n, err)
	}
	for _, f := range dumpAll(t, tb, 0x7a000000, tandem) {
		if f.Server() == servers[0] {
			t.Errorf("flow to the drained server left: %v", f)
		}
	}
	if n := len(dumpAll(t, tb, 0x11, 0xffffffff)); n != 10 {
		t.Errorf("DeleteWhere touched other marks: %d left of 10", n)
	}
}

// TestNetnsDecodeMatchesTiMo decodes real kernel dump messages with both
// decoders. With CTSYNC_WRITE_SEEDS=1 it also stores them as seeds of
// FuzzDecodeEntry.
func TestNetnsDecodeMatchesTiMo(t *testing.T) {
	l := newLab(t, "dm")
	ns := l.ns("box")
	nft(t, ns, natRuleset)
	tb := openTable(t, ns)
	snat := dnatFlow()
	snat.Reply.Dst = ap("198.19.60.2:61000")
	v6 := Flow{Proto: ProtoUDP, Mark: 0x7a000002, Zone: 4, Timeout: 60,
		Orig:  Tuple{Src: ap("[2001:db8::10]:5000"), Dst: ap("[2001:db8::100]:53")},
		Reply: Tuple{Src: ap("[2001:db8:1::20]:5353"), Dst: ap("[2001:db8::10]:5000")}}
	for _, f := range []Flow{snat, v6} {
		if err := tb.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	req, err := dumpMessage(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var raw []nlmsg
	if err := tb.bulk.execute(req, func(m nlmsg) {
		m.data = append([]byte(nil), m.data...)
		raw = append(raw, m)
	}); err != nil {
		t.Fatal(err)
	}
	if len(raw) != 2 {
		t.Fatalf("%d messages dumped, want 2", len(raw))
	}
	for i, m := range raw {
		typ, got, err := decodeEntry(m.typ, m.flags, m.data)
		otyp, ogot, oerr := tiMoDecode(netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(m.typ), Flags: netlink.HeaderFlags(m.flags)}, Data: m.data})
		if err != nil || oerr != nil || typ != otyp || got != ogot {
			t.Errorf("kernel message %d: decodeEntry %v %+v %v; ti-mo/conntrack %v %+v %v", i, typ, got, err, otyp, ogot, oerr)
		}
		if os.Getenv("CTSYNC_WRITE_SEEDS") == "1" {
			seed := fmt.Sprintf("go test fuzz v1\nuint16(%d)\nuint16(%d)\n[]byte(%q)\n", m.typ, m.flags, m.data)
			if err := os.WriteFile(fmt.Sprintf("testdata/fuzz/FuzzDecodeEntry/kernel-dump-%d", i), []byte(seed), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestNetnsWriteBatch(t *testing.T) {
	l := newLab(t, "wb")
	ns := l.ns("box")
	nft(t, ns, natRuleset)
	tb := openTable(t, ns)
	flow := func(i int) Flow {
		f := dnatFlow()
		f.Orig.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 70, byte(i >> 8)}), uint16(1000+i))
		f.Reply.Dst = f.Orig.Src
		return f
	}
	// Already there: one with the same binding, one with another.
	same, other := flow(3), flow(4)
	other.Reply.Src = ap("198.19.60.99:1")
	for _, f := range []Flow{same, other} {
		if err := tb.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	var batch []Flow
	for i := range 600 { // three datagrams
		batch = append(batch, flow(i))
	}
	bad := flow(9999)
	bad.Proto = 1
	batch = append(batch, bad)
	err := tb.WriteBatch(batch)
	if !errors.Is(err, ErrInvalidFlow) {
		t.Errorf("WriteBatch error %v, want the invalid flow's", err)
	}
	got := dumpAll(t, tb, testMark, 0xffffffff)
	if len(got) != 600 {
		t.Fatalf("%d entries after WriteBatch, want 600", len(got))
	}
	for i := range 600 {
		if f := flow(i); got[f.Key()].Reply != f.Reply {
			t.Errorf("entry %d: reply %v, want %v", i, got[f.Key()].Reply, f.Reply)
		}
	}
	if st := tb.Stats(); st.Created != 2+598 || st.Updated != 1 || st.Replaced != 1 || st.WriteErrors != 1 {
		t.Errorf("stats %+v", st)
	}
}
