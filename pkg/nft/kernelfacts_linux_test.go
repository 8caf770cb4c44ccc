package nft

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TestNetnsKernelFacts pins the kernel behaviours the design rests on,
// with rules written directly (no Manager), in a table of its own:
//
//  1. a map with concatenated data (ipv4_addr . inet_service) feeds a
//     DNAT: address from the lookup's destination register, port from the
//     next one;
//  2. a dynset can store a register that holds such a lookup result (a
//     persistence map client -> address . port works in the kernel);
//  3. a dynset update of an existing entry refreshes it but never
//     replaces its data: an entry pointing at a server that left must be
//     deleted, not overwritten.
//
// The package does not use 1 and 2 for its rules because nft(8) 1.0.6
// cannot list them (it aborts on a lookup or dynset fed by a lookup), but
// the kernel side works; see TestNetnsNftListsFullRuleset.
func TestNetnsKernelFacts(t *testing.T) {
	l := newLab(t, true)
	s1, s2 := ap(srv4[0], 8080), ap(srv4[1], 8080)
	serveTCP(t, l.s1, "s1", s1, true)
	serveTCP(t, l.s2, "s2", s2, true)
	h, err := netns.GetFromName(l.lb)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Name: "facts", Family: nftables.TableFamilyINet})
	pre := c.AddChain(&nftables.Chain{Name: "pre", Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	apT := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	slots := &nftables.Set{Table: tbl, Name: "slots", IsMap: true, KeyType: nftables.TypeMark, DataType: apT}
	stk := &nftables.Set{Table: tbl, Name: "stk", IsMap: true, Dynamic: true, HasTimeout: true, KeyType: nftables.TypeIPAddr, DataType: apT}
	for _, s := range []*nftables.Set{slots, stk} {
		var elems []nftables.SetElement
		if s == slots {
			elems = []nftables.SetElement{{Key: u32(0), Val: apBytes(s1)}, {Key: u32(1), Val: apBytes(s2)}}
		}
		if err := c.AddSet(s, elems); err != nil {
			t.Fatal(err)
		}
	}
	match := cat(matchNfproto(fam4), matchL4(unix.IPPROTO_TCP),
		[]expr.Any{loadAddr(fam4, fam4.daddr, r0), &expr.Cmp{Op: expr.CmpOpEq, Register: r0, Data: addrBytes(vip4)}},
		matchDport(80))
	const d = r0 + 1 // data register: address, then port at d+1
	nat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: d, RegAddrMax: d,
		RegProtoMin: d + 1, RegProtoMax: d + 1, Specified: true}
	lookupSlot := []expr.Any{&expr.Numgen{Register: r0, Type: unix.NFT_NG_INCREMENTAL, Modulus: 2},
		&expr.Lookup{SourceRegister: r0, DestRegister: d, IsDestRegSet: true, SetName: "slots"}}
	saddr := []expr.Any{loadAddr(fam4, fam4.saddr, r0)}
	add := func(exprs ...[]expr.Any) { c.AddRule(&nftables.Rule{Table: tbl, Chain: pre, Exprs: cat(exprs...)}) }
	defer func() { c.DelTable(tbl); c.Flush() }()

	// 1: round robin through the concatenated map.
	add(match, lookupSlot, []expr.Any{nat})
	if err := c.Flush(); err != nil {
		t.Fatalf("concatenated map data + DNAT refused: %v", err)
	}
	var got []string
	for range 4 {
		if cn := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second); cn != nil {
			got = append(got, cn.server)
		}
	}
	if len(got) != 4 || got[0] == got[1] || got[1] == got[2] || got[2] == got[3] {
		t.Fatalf("1: DNAT from concatenated map data: %v, want alternating s1/s2", got)
	}

	// 2: persistence map fed from the lookup's register.
	c.FlushChain(pre)
	add(match, saddr, []expr.Any{&expr.Lookup{SourceRegister: r0, DestRegister: d, IsDestRegSet: true, SetName: "stk"}, nat})
	add(match, lookupSlot, saddr, []expr.Any{
		&expr.Dynset{SrcRegKey: r0, SrcRegData: d, SetName: "stk", Operation: dynsetOpUpdate, Timeout: time.Minute}, nat})
	if err := c.Flush(); err != nil {
		t.Fatalf("dynset with register data refused: %v", err)
	}
	got = got[:0]
	for range 4 {
		if cn := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second); cn != nil {
			got = append(got, cn.server)
		}
	}
	elems, err := c.GetSetElements(stk)
	if err != nil || len(elems) != 1 {
		t.Fatalf("2: stk elements = %+v, %v", elems, err)
	}
	stored, _ := apFromBytes(elems[0].Val)
	if len(got) != 4 || got[0] != got[1] || got[1] != got[2] || got[2] != got[3] || map[string]netip.AddrPort{"s1": s1, "s2": s2}[got[0]] != stored {
		t.Fatalf("2: flows %v, entry -> %v: want one server, the one stored", got, stored)
	}

	// 3: an update with other data leaves the entry's data alone.
	other := s1
	if stored == s1 {
		other = s2
	}
	c.FlushChain(pre)
	add(match, saddr, []expr.Any{
		&expr.Immediate{Register: d, Data: addrBytes(other.Addr())},
		&expr.Immediate{Register: d + 1, Data: binaryutil.BigEndian.PutUint16(other.Port())},
		&expr.Dynset{SrcRegKey: r0, SrcRegData: d, SetName: "stk", Operation: dynsetOpUpdate, Timeout: time.Minute}})
	add(match, saddr, []expr.Any{&expr.Lookup{SourceRegister: r0, DestRegister: d, IsDestRegSet: true, SetName: "stk"}, nat})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	cn := dialTCP(t, l.client, netip.AddrPort{}, ap(vip4, 80), 2*time.Second)
	elems, _ = c.GetSetElements(stk)
	if cn == nil || len(elems) != 1 {
		t.Fatalf("3: flow %+v, elements %+v", cn, elems)
	}
	if now, _ := apFromBytes(elems[0].Val); now != stored {
		t.Errorf("3: a dynset update replaced the entry's data: %v -> %v (the design assumes it never does)", stored, now)
	}
}
