package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// parseProxyHeader decodes a PROXY v2 header of the kind appendProxyHeader
// writes, for the tests: it returns the addresses, the header length and
// whether the command was LOCAL.
func parseProxyHeader(b []byte) (src, dst netip.AddrPort, n int, local bool, err error) {
	if len(b) < ppv2FixedLen || !bytes.Equal(b[:12], ppv2Signature[:]) {
		return src, dst, 0, false, errors.New("no v2 signature")
	}
	l := int(binary.BigEndian.Uint16(b[14:16]))
	if len(b) < ppv2FixedLen+l {
		return src, dst, 0, false, errors.New("short header")
	}
	body := b[ppv2FixedLen : ppv2FixedLen+l]
	switch {
	case b[12] == ppv2VersionLocal:
		return src, dst, ppv2FixedLen + l, true, nil
	case b[12] != ppv2VersionProxy:
		return src, dst, 0, false, errors.New("bad version/command")
	case b[13] == ppv2TCP4 && l >= ppv2TCP4Len:
		sa := netip.AddrFrom4([4]byte(body[0:4]))
		da := netip.AddrFrom4([4]byte(body[4:8]))
		src = netip.AddrPortFrom(sa, binary.BigEndian.Uint16(body[8:10]))
		dst = netip.AddrPortFrom(da, binary.BigEndian.Uint16(body[10:12]))
	case b[13] == ppv2TCP6 && l >= ppv2TCP6Len:
		sa := netip.AddrFrom16([16]byte(body[0:16]))
		da := netip.AddrFrom16([16]byte(body[16:32]))
		src = netip.AddrPortFrom(sa, binary.BigEndian.Uint16(body[32:34]))
		dst = netip.AddrPortFrom(da, binary.BigEndian.Uint16(body[34:36]))
	default:
		return src, dst, 0, false, errors.New("bad family")
	}
	return src, dst, ppv2FixedLen + l, false, nil
}

func hexBytes(t *testing.T, parts ...[]byte) []byte {
	t.Helper()
	return bytes.Join(parts, nil)
}

// TestProxyHeaderLayout pins the bytes against the layout of section 2.2
// of the spec: signature, ver/cmd, fam/proto, length, addresses, ports.
func TestProxyHeaderLayout(t *testing.T) {
	sig := []byte("\r\n\r\n\x00\r\nQUIT\n")
	tests := []struct {
		name     string
		src, dst string
		want     []byte
	}{
		{"tcp4", "192.0.2.1:56324", "198.18.0.100:443", hexBytes(t, sig,
			[]byte{0x21, 0x11, 0x00, 0x0c},
			[]byte{192, 0, 2, 1}, []byte{198, 18, 0, 100},
			[]byte{0xdc, 0x04}, []byte{0x01, 0xbb})},
		{"tcp6", "[2001:db8::1]:1", "[2001:db8::100]:80", hexBytes(t, sig,
			[]byte{0x21, 0x21, 0x00, 0x24},
			[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01},
			[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00},
			[]byte{0x00, 0x01}, []byte{0x00, 0x50})},
		{"mapped v4 is v4", "[::ffff:198.18.0.1]:2", "[::ffff:198.18.0.2]:3", hexBytes(t, sig,
			[]byte{0x21, 0x11, 0x00, 0x0c},
			[]byte{198, 18, 0, 1}, []byte{198, 18, 0, 2},
			[]byte{0x00, 0x02}, []byte{0x00, 0x03})},
		{"mixed families go v6", "198.18.0.1:2", "[2001:db8::100]:80", hexBytes(t, sig,
			[]byte{0x21, 0x21, 0x00, 0x24},
			[]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1},
			[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00},
			[]byte{0x00, 0x02}, []byte{0x00, 0x50})},
		{"unknown source is LOCAL", "", "198.18.0.100:443", hexBytes(t, sig,
			[]byte{0x20, 0x00, 0x00, 0x00})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var src, dst netip.AddrPort
			if tt.src != "" {
				src = netip.MustParseAddrPort(tt.src)
			}
			dst = netip.MustParseAddrPort(tt.dst)
			got := appendProxyHeader(nil, src, dst)
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("header\n got %x\nwant %x", got, tt.want)
			}
			if len(got) > maxProxyHeaderLen {
				t.Errorf("len %d > maxProxyHeaderLen %d", len(got), maxProxyHeaderLen)
			}
		})
	}
}

func TestProxyHeaderAppends(t *testing.T) {
	prefix := []byte("keep")
	got := appendProxyHeader(prefix, netip.MustParseAddrPort("1.2.3.4:5"), netip.MustParseAddrPort("5.6.7.8:9"))
	if !bytes.HasPrefix(got, prefix) || len(got) != len(prefix)+ppv2FixedLen+ppv2TCP4Len {
		t.Fatalf("append lost the prefix or has the wrong length: %x", got)
	}
	if n := testing.AllocsPerRun(100, func() {
		var buf [maxProxyHeaderLen]byte
		appendProxyHeader(buf[:0], netip.MustParseAddrPort("[2001:db8::1]:1"), netip.MustParseAddrPort("[2001:db8::2]:2"))
	}); n != 0 {
		t.Errorf("appendProxyHeader into a stack buffer allocates %v times", n)
	}
}

// FuzzProxyHeader checks that every header decodes back to the addresses
// it was made from (unmapped, or mapped when the families differ).
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte{192, 0, 2, 1}, []byte{198, 18, 0, 100}, uint16(56324), uint16(443))
	f.Add(bytes.Repeat([]byte{0x20}, 16), bytes.Repeat([]byte{1}, 16), uint16(0), uint16(65535))
	f.Add([]byte{10, 0, 0, 1}, bytes.Repeat([]byte{2}, 16), uint16(1), uint16(2))
	f.Add([]byte{}, []byte{1, 2, 3, 4}, uint16(1), uint16(2))
	f.Fuzz(func(t *testing.T, s, d []byte, sp, dp uint16) {
		sa, _ := netip.AddrFromSlice(s)
		da, _ := netip.AddrFromSlice(d)
		src, dst := netip.AddrPortFrom(sa, sp), netip.AddrPortFrom(da, dp)
		h := appendProxyHeader(nil, src, dst)
		gs, gd, n, local, err := parseProxyHeader(h)
		if err != nil {
			t.Fatalf("decode %x: %v", h, err)
		}
		if n != len(h) {
			t.Fatalf("decoded length %d, header is %d bytes", n, len(h))
		}
		if !sa.IsValid() || !da.IsValid() {
			if !local {
				t.Fatalf("invalid address gave %x, want LOCAL", h)
			}
			return
		}
		if local {
			t.Fatalf("valid addresses gave LOCAL: %x", h)
		}
		want := func(a netip.Addr) netip.Addr {
			a = a.Unmap()
			if a.Is4() && !(sa.Unmap().Is4() && da.Unmap().Is4()) {
				return netip.AddrFrom16(a.As16())
			}
			return a
		}
		if gs.Addr() != want(sa) || gd.Addr() != want(da) || gs.Port() != sp || gd.Port() != dp {
			t.Fatalf("round trip: %v → %v, %v → %v (%x)", src, gs, dst, gd, h)
		}
	})
}
