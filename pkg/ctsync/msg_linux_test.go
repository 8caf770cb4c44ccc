package ctsync

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
)

// attrTree is a decoded attribute: its payload and, when it carried
// NLA_F_NESTED, its children by type.
type attrTree struct {
	data     []byte
	nested   bool
	children map[uint16]*attrTree
}

func parseAttrs(t *testing.T, b []byte) map[uint16]*attrTree {
	t.Helper()
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint16]*attrTree{}
	for ad.Next() {
		a := &attrTree{data: ad.Bytes(), nested: ad.TypeFlags()&netlink.Nested != 0}
		if a.nested {
			a.children = parseAttrs(t, a.data)
		}
		if _, dup := out[ad.Type()]; dup {
			t.Fatalf("attribute %d twice", ad.Type())
		}
		out[ad.Type()] = a
	}
	if err := ad.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustNested(t *testing.T, m map[uint16]*attrTree, path ...uint16) map[uint16]*attrTree {
	t.Helper()
	for _, typ := range path {
		a, ok := m[typ]
		if !ok {
			t.Fatalf("attribute %v missing", path)
		}
		if !a.nested {
			t.Fatalf("attribute %d lacks NLA_F_NESTED (the kernel's nla_parse_nested refuses it)", typ)
		}
		m = a.children
	}
	return m
}

func decodeBuilt(t *testing.T, m netlink.Message) (netfilter.Header, map[uint16]*attrTree) {
	t.Helper()
	m.Header.Length = uint32(16 + len(m.Data)) // the Conn fills it in when sending
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back netlink.Message
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	h, _, err := netfilter.DecodeNetlink(back)
	if err != nil {
		t.Fatal(err)
	}
	return h, parseAttrs(t, back.Data[4:])
}

func tupleOf(t *testing.T, m map[uint16]*attrTree) Tuple {
	t.Helper()
	ip := mustNested(t, m, ctaTupleIP)
	pr := mustNested(t, m, ctaTupleProto)
	var src, dst netip.Addr
	if a, ok := ip[ctaIPv4Src]; ok {
		src, dst = netip.AddrFrom4([4]byte(a.data)), netip.AddrFrom4([4]byte(ip[ctaIPv4Dst].data))
	} else {
		src, dst = netip.AddrFrom16([16]byte(ip[ctaIPv6Src].data)), netip.AddrFrom16([16]byte(ip[ctaIPv6Dst].data))
	}
	be := binary.BigEndian
	return Tuple{
		Src: netip.AddrPortFrom(src, be.Uint16(pr[ctaProtoSrcPort].data)),
		Dst: netip.AddrPortFrom(dst, be.Uint16(pr[ctaProtoDstPort].data)),
	}
}

func natOf(t *testing.T, m map[uint16]*attrTree, typ uint16) netip.AddrPort {
	t.Helper()
	n := mustNested(t, m, typ)
	p := mustNested(t, n, ctaNATProto)
	var a netip.Addr
	if v, ok := n[ctaNATv4MinIP]; ok {
		a = netip.AddrFrom4([4]byte(v.data))
		if string(n[ctaNATv4MaxIP].data) != string(v.data) {
			t.Errorf("NAT %d: max ip differs from min", typ)
		}
	} else {
		a = netip.AddrFrom16([16]byte(n[ctaNATv6MinIP].data))
	}
	lo, hi := binary.BigEndian.Uint16(p[ctaProtoNATPortMin].data), binary.BigEndian.Uint16(p[ctaProtoNATPortMax].data)
	if lo != hi {
		t.Errorf("NAT %d: port range %d-%d, want one port", typ, lo, hi)
	}
	return netip.AddrPortFrom(a, lo)
}

func TestCreateMessageCarriesNAT(t *testing.T) {
	f := dnatFlow()
	f.Reply.Dst = ap("198.19.60.2:61000") // SNAT too
	h, attrs := decodeBuilt(t, mustMsg(newFlowMessage(f, true, true)))

	if h.SubsystemID != netfilter.NFSubsysCTNetlink || h.MessageType != msgCTNew || h.Family != netfilter.ProtoIPv4 {
		t.Errorf("header %v", h)
	}
	want := netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl
	if h.Flags != want {
		t.Errorf("flags %v, want %v", h.Flags, want)
	}
	if got := tupleOf(t, mustNested(t, attrs, ctaTupleOrig)); got != f.Orig {
		t.Errorf("orig tuple %v, want %v", got, f.Orig)
	}
	// The kernel derives the NATed reply from the inverse of the original.
	if got := tupleOf(t, mustNested(t, attrs, ctaTupleReply)); got != f.Orig.Inverse() {
		t.Errorf("reply tuple %v, want the inverse of the original %v", got, f.Orig.Inverse())
	}
	if got := natOf(t, attrs, ctaNATDst); got != f.Reply.Src {
		t.Errorf("CTA_NAT_DST %v, want the server %v", got, f.Reply.Src)
	}
	if got := natOf(t, attrs, ctaNATSrc); got != f.Reply.Dst {
		t.Errorf("CTA_NAT_SRC %v, want %v", got, f.Reply.Dst)
	}
	be := binary.BigEndian
	if s := be.Uint32(attrs[ctaStatus].data); s != StatusConfirmed|StatusSeenReply|StatusAssured {
		t.Errorf("status %#x: only CONFIRMED (required) and the settable bits may be sent", s)
	}
	if m := be.Uint32(attrs[ctaMark].data); m != f.Mark {
		t.Errorf("mark %#x", m)
	}
	if to := be.Uint32(attrs[ctaTimeout].data); to != f.Timeout {
		t.Errorf("timeout %d", to)
	}
	tcp := mustNested(t, attrs, ctaProtoInfo, ctaProtoInfoTCP)
	if s := tcp[ctaProtoInfoTCPState].data[0]; s != TCPEstablished {
		t.Errorf("tcp state %d", s)
	}
	for _, typ := range []uint16{ctaProtoInfoTCPFlagsO, ctaProtoInfoTCPFlagsR} {
		fl := tcp[typ].data
		if len(fl) != 2 || fl[0]&TCPFlagBeLiberal == 0 || fl[1]&TCPFlagBeLiberal == 0 {
			t.Errorf("tcp flags attr %d = %x: BE_LIBERAL must be set and in the mask", typ, fl)
		}
	}
	if w := tcp[ctaProtoInfoTCPWScaleR].data[0]; w != 9 {
		t.Errorf("reply wscale %d", w)
	}
}

func TestCreateMessageNATCases(t *testing.T) {
	noNAT := dnatFlow()
	noNAT.Reply = noNAT.Orig.Inverse()
	_, attrs := decodeBuilt(t, mustMsg(newFlowMessage(noNAT, true, true)))
	if attrs[ctaNATDst] != nil || attrs[ctaNATSrc] != nil {
		t.Error("a flow without NAT got NAT attributes")
	}

	v6 := Flow{Proto: ProtoUDP, Zone: 3,
		Orig:  Tuple{Src: ap("[2001:db8::10]:5000"), Dst: ap("[2001:db8::100]:53")},
		Reply: Tuple{Src: ap("[2001:db8:1::20]:5353"), Dst: ap("[2001:db8::10]:5000")}}
	h, attrs := decodeBuilt(t, mustMsg(newFlowMessage(v6, true, true)))
	if h.Family != netfilter.ProtoIPv6 {
		t.Errorf("family %v", h.Family)
	}
	if got := natOf(t, attrs, ctaNATDst); got != v6.Reply.Src {
		t.Errorf("v6 CTA_NAT_DST %v", got)
	}
	if attrs[ctaNATSrc] != nil {
		t.Error("v6 DNAT-only flow got CTA_NAT_SRC")
	}
	if attrs[ctaProtoInfo] != nil {
		t.Error("UDP flow got TCP protoinfo")
	}
	if z := binary.BigEndian.Uint16(attrs[ctaZone].data); z != 3 {
		t.Errorf("zone %d", z)
	}
	if to := binary.BigEndian.Uint32(attrs[ctaTimeout].data); to != defaultCreateTimeoutSec {
		t.Errorf("create without a timeout sent %d", to)
	}
}

func TestUpdateMessage(t *testing.T) {
	f := dnatFlow()
	f.TCPState = TCPNone // an update event without protoinfo
	h, attrs := decodeBuilt(t, mustMsg(newFlowMessage(f, false, true)))
	if h.Flags&(netlink.Create|netlink.Excl) != 0 {
		t.Errorf("update flags %v", h.Flags)
	}
	for _, typ := range []uint16{ctaNATDst, ctaNATSrc, ctaTupleReply, ctaProtoInfo} {
		if attrs[typ] != nil {
			t.Errorf("update carries attribute %d", typ)
		}
	}
	_, attrs = decodeBuilt(t, mustMsg(newFlowMessage(f, false, false)))
	if attrs[ctaStatus] != nil {
		t.Error("status sent when asked not to")
	}
}

func TestDumpMessageMasksMark(t *testing.T) {
	h, attrs := decodeBuilt(t, mustMsg(dumpMessage(0x7a00abcd, 0xffff0000)))
	if h.Flags != netlink.Request|netlink.Dump || h.Family != netfilter.ProtoUnspec {
		t.Errorf("header %v", h)
	}
	if m := binary.BigEndian.Uint32(attrs[ctaMark].data); m != 0x7a000000 {
		t.Errorf("mark %#x: the kernel compares ct->mark&mask with it unmasked", m)
	}
}

// entryMessage encodes f the way the kernel reports an entry.
func entryMessage(f Flow, msgType uint8, flags netlink.HeaderFlags) netlink.Message {
	ae := netfilter.NewAttributeEncoder()
	ae.Nested(ctaTupleOrig, tupleEncoder(f.Proto, f.Orig))
	ae.Nested(ctaTupleReply, tupleEncoder(f.Proto, f.Reply))
	if f.Zone != 0 {
		ae.Uint16(ctaZone, f.Zone)
	}
	ae.Uint32(ctaStatus, f.Status)
	ae.Uint32(ctaTimeout, f.Timeout)
	ae.Uint32(ctaMark, f.Mark)
	if f.Proto == ProtoTCP {
		ae.Nested(ctaProtoInfo, func(ae *netlink.AttributeEncoder) error {
			ae.Nested(ctaProtoInfoTCP, func(ae *netlink.AttributeEncoder) error {
				ae.Uint8(ctaProtoInfoTCPState, f.TCPState)
				ae.Uint8(ctaProtoInfoTCPWScaleO, f.TCPWScale[0])
				ae.Uint8(ctaProtoInfoTCPWScaleR, f.TCPWScale[1])
				ae.Bytes(ctaProtoInfoTCPFlagsO, []byte{f.TCPFlags[0], 0})
				ae.Bytes(ctaProtoInfoTCPFlagsR, []byte{f.TCPFlags[1], 0})
				return nil
			})
			return nil
		})
	}
	m, err := netfilter.EncodeNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: netfilter.MessageType(msgType),
		Family: family(f), Flags: flags}, ae)
	if err != nil {
		panic(err)
	}
	return m
}

func TestDecodeEntry(t *testing.T) {
	v6 := Flow{Proto: ProtoUDP, Zone: 9, Mark: 0x7a000002, Timeout: 30, Status: StatusConfirmed,
		Orig:  Tuple{Src: ap("[2001:db8::10]:5000"), Dst: ap("[2001:db8::100]:53")},
		Reply: Tuple{Src: ap("[2001:db8:1::20]:5353"), Dst: ap("[2001:db8::10]:5000")}}
	cases := []struct {
		f     Flow
		typ   uint8
		flags netlink.HeaderFlags
		want  EventType
	}{
		{dnatFlow(), msgCTNew, netlink.Create | netlink.Excl, New},
		{dnatFlow(), msgCTNew, netlink.Multi, Update}, // a dump part
		{v6, msgCTDelete, 0, Destroy},
	}
	for _, c := range cases {
		m := entryMessage(c.f, c.typ, c.flags)
		typ, got, err := decodeEntry(uint16(m.Header.Type), uint16(m.Header.Flags), m.Data)
		if err != nil || typ != c.want || got != c.f {
			t.Errorf("decodeEntry = %v %+v %v\nwant %v %+v", typ, got, err, c.want, c.f)
		}
		otyp, ogot, oerr := tiMoDecode(m)
		if oerr != nil || otyp != typ || ogot != got {
			t.Errorf("ti-mo/conntrack disagrees: %v %+v %v", otyp, ogot, oerr)
		}
	}
	// Cut anywhere: an error, or (cut between optional attributes after
	// both tuples) a flow with the right tuples.
	f := dnatFlow()
	m := entryMessage(f, msgCTNew, 0)
	for i := range len(m.Data) {
		if _, got, err := decodeEntry(uint16(m.Header.Type), 0, m.Data[:i]); err == nil && (got.Orig != f.Orig || got.Reply != f.Reply) {
			t.Errorf("truncated at %d of %d: decoded %+v", i, len(m.Data), got)
		}
	}
	if _, _, err := decodeEntry(uint16(2)<<8, 0, m.Data); err == nil {
		t.Error("a message of another subsystem decoded")
	}
}

// FuzzDecodeEntry checks decodeEntry never panics, and agrees with
// ti-mo/conntrack's decoder whenever that one accepts the input.
func FuzzDecodeEntry(f *testing.F) {
	for _, fl := range []Flow{dnatFlow(), {Proto: ProtoUDP, Orig: Tuple{Src: ap("[2001:db8::10]:5000"), Dst: ap("[2001:db8::100]:53")},
		Reply: Tuple{Src: ap("[2001:db8::100]:53"), Dst: ap("[2001:db8::10]:5000")}}} {
		m := entryMessage(fl, msgCTNew, netlink.Create)
		f.Add(uint16(m.Header.Type), uint16(m.Header.Flags), m.Data)
	}
	f.Fuzz(func(t *testing.T, typ, flags uint16, data []byte) {
		et, got, err := decodeEntry(typ, flags, data)
		m := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.HeaderFlags(flags)}, Data: data}
		oet, ogot, oerr := tiMoDecode(m)
		if len(data) >= 4 && wideType(data[4:], 0) {
			return // ti-mo/conntrack reads attribute types as uint8: 0x3001 is 1 to it
		}
		if oerr == nil && (err != nil || et != oet || got != ogot) {
			t.Fatalf("ti-mo/conntrack decodes %v %+v; decodeEntry %v %+v %v", oet, ogot, et, got, err)
		}
	})
}

func mustMsg(m netlink.Message, err error) netlink.Message {
	if err != nil {
		panic(err)
	}
	return m
}

// wideType reports whether an attribute on the paths the decoders walk
// has a type above 255 once the flag bits are masked.
func wideType(b []byte, depth int) bool {
	a := attrs{b: b}
	for {
		typ, v, ok := a.next()
		if !ok {
			return false
		}
		if typ > 0xff {
			return true
		}
		if depth < 2 && typ <= ctaProtoInfo && wideType(v, depth+1) {
			return true
		}
	}
}
