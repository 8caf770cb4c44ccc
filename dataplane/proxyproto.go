package dataplane

import (
	"encoding/binary"
	"net/netip"
)

// PROXY protocol version 2 (haproxy's proxy-protocol.txt, section 2.2):
// a 16-byte fixed part, then the addresses. Tandem only ever sends the
// PROXY command for TCP over IPv4 or IPv6, with no TLVs.
const (
	ppv2VersionProxy = 0x21 // version 2 (high nibble), command PROXY (low)
	ppv2VersionLocal = 0x20 // version 2, command LOCAL
	ppv2TCP4         = 0x11 // AF_INET (high nibble), STREAM (low)
	ppv2TCP6         = 0x21 // AF_INET6, STREAM
	ppv2FixedLen     = 16
	ppv2TCP4Len      = 12 // 2 × 4-byte address + 2 × 2-byte port
	ppv2TCP6Len      = 36 // 2 × 16-byte address + 2 × 2-byte port

	// MaxProxyHeaderLen is the longest header appendProxyHeader writes.
	maxProxyHeaderLen = ppv2FixedLen + ppv2TCP6Len
)

// ppv2Signature opens every version 2 header.
var ppv2Signature = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// appendProxyHeader appends a PROXY protocol v2 header saying that the
// connection came from src and was addressed to dst (the VIP and port the
// client connected to). Both IPv4 gives TCP4; otherwise both addresses
// are written as IPv6 (an IPv4 one in its mapped form), since the header
// has a single family. An invalid address gives the LOCAL command with no
// addresses, which a server must accept and read as "use the connection's
// own addresses".
func appendProxyHeader(b []byte, src, dst netip.AddrPort) []byte {
	b = append(b, ppv2Signature[:]...)
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	switch {
	case !sa.IsValid() || !da.IsValid():
		return append(b, ppv2VersionLocal, 0x00, 0x00, 0x00)
	case sa.Is4() && da.Is4():
		b = append(b, ppv2VersionProxy, ppv2TCP4, 0x00, ppv2TCP4Len)
		s4, d4 := sa.As4(), da.As4()
		b = append(b, s4[:]...)
		b = append(b, d4[:]...)
	default:
		b = append(b, ppv2VersionProxy, ppv2TCP6, 0x00, ppv2TCP6Len)
		s16, d16 := sa.As16(), da.As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}
