//go:build linux

package nft

import (
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Registers, in the netlink numbering of 32-bit registers: NFT_REG32_00
// (8) is the first 4 bytes of NFT_REG_1. A concatenation occupies one
// register per component, each padded to 4 bytes, so the port of an
// ipv4_addr . inet_service value loaded at register r sits at r+1, and
// at r+4 for ipv6_addr . inet_service (verified on the kernel by the
// namespace tests: the DNATed flows reach the right port).
const r0 = unix.NFT_REG32_00

// fam is what differs between IPv4 and IPv6 in the rules.
type fam struct {
	v6      bool
	nfproto byte
	alen    uint32 // address length in bytes
	saddr   uint32 // offset of the source address in the network header
	daddr   uint32
	addrT   nftables.SetDatatype
}

var (
	fam4 = fam{false, unix.NFPROTO_IPV4, 4, 12, 16, nftables.TypeIPAddr}
	fam6 = fam{true, unix.NFPROTO_IPV6, 16, 8, 24, nftables.TypeIP6Addr}
)

func famOf(a netip.Addr) fam {
	if a.Is6() && !a.Is4In6() {
		return fam6
	}
	return fam4
}

// regs is how many 32-bit registers one address takes.
func (f fam) regs() uint32 { return f.alen / 4 }

// apType is the type of an "address . port" value (map data, set key).
func (f fam) apType() nftables.SetDatatype {
	return nftables.MustConcatSetType(f.addrT, nftables.TypeInetService)
}

func u32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

func l4num(proto string) byte {
	if proto == "udp" {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

func matchNfproto(f fam) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: r0},
		&expr.Cmp{Op: expr.CmpOpEq, Register: r0, Data: []byte{f.nfproto}},
	}
}

func matchL4(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: r0},
		&expr.Cmp{Op: expr.CmpOpEq, Register: r0, Data: []byte{proto}},
	}
}

func matchDport(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: r0, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: r0, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

func loadAddr(f fam, off uint32, reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: f.alen}
}

// matchPrefix matches the address at off against p (the caller has
// matched the family); a /0 matches everything and needs no expression.
func matchPrefix(f fam, off uint32, p netip.Prefix) []expr.Any {
	p = p.Masked()
	if p.Bits() == 0 {
		return nil
	}
	out := []expr.Any{loadAddr(f, off, r0)}
	if p.Bits() < int(f.alen*8) {
		out = append(out, &expr.Bitwise{SourceRegister: r0, DestRegister: r0, Len: f.alen,
			Mask: maskBytes(int(f.alen), p.Bits()), Xor: make([]byte, f.alen)})
	}
	return append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: r0, Data: addrBytes(p.Addr())})
}

// loadMasked puts the client address, masked to bits, in r0: the key of
// the persistence map.
func loadMasked(f fam, bits int) []expr.Any {
	out := []expr.Any{loadAddr(f, f.saddr, r0)}
	if bits < int(f.alen*8) {
		out = append(out, &expr.Bitwise{SourceRegister: r0, DestRegister: r0, Len: f.alen,
			Mask: maskBytes(int(f.alen), bits), Xor: make([]byte, f.alen)})
	}
	return out
}

func setMark(mark uint32) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: r0, Data: u32(mark)},
		&expr.Ct{Key: expr.CtKeyMARK, Register: r0, SourceRegister: true},
	}
}

func matchMark(mark uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: r0},
		&expr.Cmp{Op: expr.CmpOpEq, Register: r0, Data: u32(mark)},
	}
}

// countDrop counts the packet in a named counter and drops it.
func countDrop(counter string) []expr.Any {
	return []expr.Any{
		&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: counter},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// pick puts the slot index of the flow in r0.
func pick(svc Service, f fam, n uint32) []expr.Any {
	switch svc.Pick {
	case PickSourceHash:
		return []expr.Any{
			loadAddr(f, f.saddr, r0),
			&expr.Hash{SourceRegister: r0, DestRegister: r0, Length: f.alen, Modulus: n, Seed: svc.Seed, Type: expr.HashTypeJenkins},
		}
	case PickFiveTuple:
		// saddr . sport . daddr . dport, each padded to whole registers;
		// a 2-byte load zeroes the rest of its register, so the hash
		// input is deterministic.
		a := f.regs()
		return []expr.Any{
			loadAddr(f, f.saddr, r0),
			&expr.Payload{DestRegister: r0 + a, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
			loadAddr(f, f.daddr, r0+a+1),
			&expr.Payload{DestRegister: r0 + 2*a + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Hash{SourceRegister: r0, DestRegister: r0, Length: 2*f.alen + 8, Modulus: n, Seed: svc.Seed, Type: expr.HashTypeJenkins},
		}
	}
	return []expr.Any{&expr.Numgen{Register: r0, Type: unix.NFT_NG_INCREMENTAL, Modulus: n}}
}

// dnat rewrites the destination to ap.
func dnat(f fam, ap netip.AddrPort) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: r0, Data: addrBytes(ap.Addr())},
		&expr.Immediate{Register: r0 + f.regs(), Data: binaryutil.BigEndian.PutUint16(ap.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(f.nfproto),
			RegAddrMin: r0, RegAddrMax: r0, RegProtoMin: r0 + f.regs(), RegProtoMax: r0 + f.regs(), Specified: true},
	}
}

// snat rewrites the source to a.
func snat(a netip.Addr) []expr.Any {
	f := famOf(a)
	return []expr.Any{
		&expr.Immediate{Register: r0, Data: addrBytes(a)},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: uint32(f.nfproto), RegAddrMin: r0, RegAddrMax: r0},
	}
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
