package ctsync

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// dnatFlow is a client's TCP flow to the VIP, DNATed to a server.
func dnatFlow() Flow {
	return Flow{
		Proto:     ProtoTCP,
		Orig:      Tuple{Src: ap("198.18.60.10:40000"), Dst: ap("198.18.60.100:7000")},
		Reply:     Tuple{Src: ap("198.19.60.20:7070"), Dst: ap("198.18.60.10:40000")},
		Mark:      0x7a000001,
		Status:    StatusConfirmed | StatusSeenReply | StatusAssured | StatusDstNAT | StatusDstNATDone | StatusSrcNATDone,
		TCPState:  TCPEstablished,
		TCPFlags:  [2]uint8{TCPFlagWindowScale | TCPFlagSackPerm, TCPFlagWindowScale},
		TCPWScale: [2]uint8{7, 9},
		Timeout:   431999,
	}
}

func TestCodecRoundTrip(t *testing.T) {
	snat := dnatFlow()
	snat.Reply.Dst = ap("198.19.60.2:40000")
	udp := Flow{
		Proto:   ProtoUDP,
		Orig:    Tuple{Src: ap("198.18.60.10:5353"), Dst: ap("198.18.60.100:53")},
		Reply:   Tuple{Src: ap("198.19.60.20:53"), Dst: ap("198.18.60.10:5353")},
		Mark:    0x7a000002,
		Zone:    7,
		Status:  StatusConfirmed,
		Timeout: 30,
	}
	v6 := Flow{
		Proto:    ProtoTCP,
		Orig:     Tuple{Src: ap("[2001:db8::10]:40000"), Dst: ap("[2001:db8::100]:443")},
		Reply:    Tuple{Src: ap("[2001:db8:1::20]:8443"), Dst: ap("[2001:db8:1::2]:61000")},
		Mark:     0xffffffff,
		Zone:     0xffff,
		Status:   0xffffffff,
		TCPState: TCPSynSent2,
		Timeout:  0xffffffff,
	}
	v6udp := Flow{
		Proto: ProtoUDP,
		Orig:  Tuple{Src: ap("[2001:db8::10]:1"), Dst: ap("[2001:db8::100]:2")},
		Reply: Tuple{Src: ap("[2001:db8::100]:2"), Dst: ap("[2001:db8::10]:1")},
	}
	for name, f := range map[string]Flow{"v4 tcp dnat": dnatFlow(), "v4 tcp dnat+snat": snat, "v4 udp": udp, "v6 tcp": v6, "v6 udp no nat": v6udp} {
		t.Run(name, func(t *testing.T) {
			b := AppendFlow([]byte("prefix"), f)
			got, err := DecodeFlow(b[len("prefix"):])
			if err != nil {
				t.Fatalf("DecodeFlow: %v", err)
			}
			if got != f {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, f)
			}
		})
	}
	// The common case stays compact: DNAT only, IPv4, TCP.
	if n := len(AppendFlow(nil, dnatFlow())); n > 40 {
		t.Errorf("IPv4 DNAT flow encodes to %d bytes, want <= 40", n)
	}
}

// randomFlow draws a valid flow, biased towards the shapes that matter:
// NAT or not on either side, both families, TCP info or not.
func randomFlow(r *rand.Rand) Flow {
	addr := func(six bool) netip.AddrPort {
		var a netip.Addr
		if six {
			var b [16]byte
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			b[0] = 0x20 // never IPv4-mapped
			a = netip.AddrFrom16(b)
		} else {
			a = netip.AddrFrom4([4]byte{198, 18, byte(r.Uint32()), byte(r.Uint32())})
		}
		return netip.AddrPortFrom(a, uint16(r.Uint32()))
	}
	six := r.IntN(2) == 0
	f := Flow{Proto: byte(1 + r.IntN(255)), Orig: Tuple{Src: addr(six), Dst: addr(six)}}
	f.Reply = f.Orig.Inverse()
	if r.IntN(2) == 0 {
		f.Reply.Src = addr(six)
	}
	if r.IntN(3) == 0 {
		f.Reply.Dst = addr(six)
	}
	f.Mark, f.Status, f.Timeout = r.Uint32(), r.Uint32(), r.Uint32()>>uint(r.IntN(32))
	f.Zone = uint16(r.Uint32())
	if r.IntN(2) == 0 {
		f.TCPState = byte(r.IntN(int(tcpStateMax)))
		f.TCPFlags = [2]uint8{byte(r.Uint32()), byte(r.Uint32())}
		f.TCPWScale = [2]uint8{byte(r.IntN(15)), byte(r.IntN(15))}
	}
	return f
}

func TestCodecRoundTripProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var buf []byte
	for i := range 20000 {
		f := randomFlow(r)
		buf = AppendFlow(buf[:0], f)
		got, err := DecodeFlow(buf)
		if err != nil {
			t.Fatalf("#%d DecodeFlow(%x): %v (flow %+v)", i, buf, err, f)
		}
		if got != f {
			t.Fatalf("#%d round trip:\n got %+v\nwant %+v", i, got, f)
		}
	}
}

func TestDecodeFlowRejectsMalformed(t *testing.T) {
	good := AppendFlow(nil, dnatFlow())
	mut := func(fn func(b []byte) []byte) []byte { return fn(append([]byte(nil), good...)) }
	cases := map[string][]byte{
		"empty":         {},
		"version 0":     mut(func(b []byte) []byte { b[0] = 0; return b }),
		"version 2":     mut(func(b []byte) []byte { b[0] = 2; return b }),
		"unknown flag":  mut(func(b []byte) []byte { b[1] |= 0x80; return b }),
		"trailing byte": append(append([]byte(nil), good...), 0),
		"tcp state 10":  mut(func(b []byte) []byte { b[len(b)-5] = 10; return b }),
		"invalid flow":  AppendFlow(nil, Flow{Proto: 6}),
		"protocol 0":    mut(func(b []byte) []byte { b[2] = 0; return b }),
	}
	// A varint past 32 bits where the mark goes: header, proto, orig src,
	// orig dst and reply src (DNAT) are fixed size.
	pre := good[:3+6+6+6]
	cases["mark too large"] = append(append([]byte(nil), pre...), 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 0)
	cases["varint overflow"] = append(append([]byte(nil), pre...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
	for i := range good {
		cases[fmt.Sprintf("truncated at %d", i)] = good[:i]
	}
	for name, b := range cases {
		f, err := DecodeFlow(b)
		if err == nil {
			t.Errorf("%s: DecodeFlow(%x) = %+v, want an error", name, b, f)
			continue
		}
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error %v does not wrap ErrMalformed", name, err)
		}
	}
}

func TestValid(t *testing.T) {
	ok := dnatFlow()
	mixed := ok
	mixed.Reply.Src = ap("[2001:db8::1]:80")
	mapped := ok
	mapped.Orig.Src = netip.AddrPortFrom(netip.MustParseAddr("::ffff:198.18.0.1"), 1)
	zoned := Flow{Proto: 6, Orig: Tuple{Src: ap("[fe80::1%eth0]:1"), Dst: ap("[fe80::2]:2")}}
	zoned.Reply = zoned.Orig.Inverse()
	missing := ok
	missing.Reply.Dst = netip.AddrPort{}
	badState := ok
	badState.TCPState = 10
	if err := ok.Valid(); err != nil {
		t.Errorf("valid flow: %v", err)
	}
	for name, f := range map[string]Flow{"mixed": mixed, "mapped": mapped, "zoned": zoned, "missing": missing, "state": badState, "proto0": {}} {
		if err := f.Valid(); !errors.Is(err, ErrInvalidFlow) {
			t.Errorf("%s: Valid() = %v, want ErrInvalidFlow", name, err)
		}
		if _, err := DecodeFlow(AppendFlow(nil, f)); err == nil {
			t.Errorf("%s: an invalid flow's encoding decoded", name)
		}
	}
}

func TestFlowNAT(t *testing.T) {
	f := dnatFlow()
	if to, ok := f.DNAT(); !ok || to != ap("198.19.60.20:7070") {
		t.Errorf("DNAT() = %v %v", to, ok)
	}
	if _, ok := f.SNAT(); ok {
		t.Error("SNAT() reported for a DNAT-only flow")
	}
	f.Reply.Dst = ap("198.19.60.2:1024")
	if to, ok := f.SNAT(); !ok || to != ap("198.19.60.2:1024") {
		t.Errorf("SNAT() = %v %v", to, ok)
	}
	if !f.Matches(0x7a000009, 0xffff0000) || f.Matches(0x7b000001, 0xffff0000) {
		t.Error("Matches ignores the mask")
	}
}

// FuzzDecodeFlow checks DecodeFlow never panics and that whatever it
// accepts re-encodes to a record that decodes to the same flow.
func FuzzDecodeFlow(f *testing.F) {
	f.Add(AppendFlow(nil, dnatFlow()))
	r := rand.New(rand.NewPCG(3, 4))
	for range 8 {
		f.Add(AppendFlow(nil, randomFlow(r)))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, err := DecodeFlow(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := DecodeFlow(AppendFlow(nil, fl))
		if err != nil || again != fl {
			t.Fatalf("re-encode of %+v: %+v, %v", fl, again, err)
		}
	})
}
