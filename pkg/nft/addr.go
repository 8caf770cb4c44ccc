package nft

import (
	"encoding/binary"
	"hash/fnv"
	"net/netip"
	"slices"
)

// addrRange is an inclusive range of addresses of one family.
type addrRange struct{ first, last netip.Addr }

// mergePrefixes turns prefixes of one family into sorted, disjoint,
// non-adjacent ranges: an interval set refuses overlapping elements, and
// an operator's allow list may well overlap (198.18.0.0/15 and 198.19.1.0/24).
func mergePrefixes(ps []netip.Prefix) []addrRange {
	rs := make([]addrRange, 0, len(ps))
	for _, p := range ps {
		p = p.Masked()
		rs = append(rs, addrRange{p.Addr(), lastAddr(p)})
	}
	slices.SortFunc(rs, func(a, b addrRange) int { return a.first.Compare(b.first) })
	var out []addrRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			cur := &out[n-1]
			next := cur.last.Next() // invalid when cur ends at the top
			if !next.IsValid() || r.first.Compare(next) <= 0 {
				if r.last.Compare(cur.last) > 0 {
					cur.last = r.last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// lastAddr is the highest address of p (p masked).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for bit := 0; bit < 8; bit++ {
			if i*8+bit >= bits {
				b[i] |= 0x80 >> bit
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// maskAddr keeps the first bits of a (the sticky key of a client).
func maskAddr(a netip.Addr, bits int) netip.Addr {
	p, err := a.Prefix(bits)
	if err != nil {
		return a
	}
	return p.Addr()
}

// maskBytes is the network-order mask of bits for an address of n bytes.
func maskBytes(n, bits int) []byte {
	m := make([]byte, n)
	for i := 0; i < bits && i < n*8; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

// apBytes encodes ap as the kernel holds an address . inet_service
// concatenation: address, port in network order, two bytes of padding.
func apBytes(ap netip.AddrPort) []byte {
	b := ap.Addr().Unmap().AsSlice()
	b = binary.BigEndian.AppendUint16(b, ap.Port())
	return append(b, 0, 0)
}

// apFromBytes decodes apBytes; ok is false on a length mismatch.
func apFromBytes(b []byte) (netip.AddrPort, bool) {
	if len(b) != 8 && len(b) != 20 {
		return netip.AddrPort{}, false
	}
	n := len(b) - 4
	a, _ := netip.AddrFromSlice(b[:n])
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[n:])), true
}

func addrBytes(a netip.Addr) []byte { return a.Unmap().AsSlice() }

// serverID is a server's 32-bit name in the kernel maps (slots and
// persistence entries hold it; the servers map turns it into address .
// port). A hash, not an index, so an entry keeps meaning the same server
// across applies and on the peer box.
func serverID(ap netip.AddrPort) uint32 {
	h := fnv.New32a()
	h.Write(apBytes(ap))
	return h.Sum32()
}
