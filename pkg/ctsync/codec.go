package ctsync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
)

// Wire format of one flow (the lead puts it in a replication record):
//
//	version u8 (1) | flags u8 | proto u8
//	orig.src addr | port u16 | orig.dst addr | port u16
//	[reply.src addr | port u16]   unless flagReplySrcIsOrigDst
//	[reply.dst addr | port u16]   unless flagReplyDstIsOrigSrc
//	mark uvarint | zone uvarint | status uvarint | timeout uvarint
//	[tcp state u8 | flags orig u8 | flags reply u8 | wscale orig u8 | wscale reply u8]  if flagTCP
//
// Addresses are 4 bytes, or 16 with flagIPv6; ports big-endian. A DNATed
// flow without SNAT (the common case) omits the reply destination: 24
// bytes plus the varints for IPv4, about 30 in all.
const (
	codecVersion = 1

	flagIPv6              = 0x01
	flagReplySrcIsOrigDst = 0x02 // no DNAT
	flagReplyDstIsOrigSrc = 0x04 // no SNAT
	flagTCP               = 0x08
	flagsKnown            = flagIPv6 | flagReplySrcIsOrigDst | flagReplyDstIsOrigSrc | flagTCP
)

// ErrMalformed is wrapped by DecodeFlow's errors.
var ErrMalformed = errors.New("malformed conntrack flow record")

// AppendFlow appends f's encoding to b. A flow that fails Valid is encoded
// as a one-byte record that DecodeFlow rejects, so a bug upstream surfaces
// at the receiver as an error rather than as a bogus entry in its kernel.
func AppendFlow(b []byte, f Flow) []byte {
	if f.Valid() != nil {
		return append(b, 0)
	}
	var flags byte
	if f.Is6() {
		flags |= flagIPv6
	}
	if f.Reply.Src == f.Orig.Dst {
		flags |= flagReplySrcIsOrigDst
	}
	if f.Reply.Dst == f.Orig.Src {
		flags |= flagReplyDstIsOrigSrc
	}
	tcp := f.TCPState != 0 || f.TCPFlags != [2]uint8{} || f.TCPWScale != [2]uint8{}
	if tcp {
		flags |= flagTCP
	}
	b = append(b, codecVersion, flags, f.Proto)
	b = appendAddrPort(b, f.Orig.Src)
	b = appendAddrPort(b, f.Orig.Dst)
	if flags&flagReplySrcIsOrigDst == 0 {
		b = appendAddrPort(b, f.Reply.Src)
	}
	if flags&flagReplyDstIsOrigSrc == 0 {
		b = appendAddrPort(b, f.Reply.Dst)
	}
	b = binary.AppendUvarint(b, uint64(f.Mark))
	b = binary.AppendUvarint(b, uint64(f.Zone))
	b = binary.AppendUvarint(b, uint64(f.Status))
	b = binary.AppendUvarint(b, uint64(f.Timeout))
	if tcp {
		b = append(b, f.TCPState, f.TCPFlags[0], f.TCPFlags[1], f.TCPWScale[0], f.TCPWScale[1])
	}
	return b
}

func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	if a := ap.Addr(); a.Is4() {
		v := a.As4()
		b = append(b, v[:]...)
	} else {
		v := a.As16()
		b = append(b, v[:]...)
	}
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

// DecodeFlow decodes one record written by AppendFlow. It rejects
// truncated input, trailing bytes, unknown versions or flags and values
// out of range, with an error wrapping ErrMalformed; it never panics.
func DecodeFlow(b []byte) (Flow, error) {
	d := reader{b: b}
	version, flags := d.byte(), d.byte()
	if d.err == nil && version != codecVersion {
		return Flow{}, fmt.Errorf("%w: version %d", ErrMalformed, version)
	}
	if d.err == nil && flags&^flagsKnown != 0 {
		return Flow{}, fmt.Errorf("%w: unknown flags %#x", ErrMalformed, flags)
	}
	var f Flow
	f.Proto = d.byte()
	six := flags&flagIPv6 != 0
	f.Orig.Src = d.addrPort(six)
	f.Orig.Dst = d.addrPort(six)
	f.Reply.Src, f.Reply.Dst = f.Orig.Dst, f.Orig.Src
	if flags&flagReplySrcIsOrigDst == 0 {
		f.Reply.Src = d.addrPort(six)
	}
	if flags&flagReplyDstIsOrigSrc == 0 {
		f.Reply.Dst = d.addrPort(six)
	}
	f.Mark = uint32(d.uvarint(math.MaxUint32))
	f.Zone = uint16(d.uvarint(math.MaxUint16))
	f.Status = uint32(d.uvarint(math.MaxUint32))
	f.Timeout = uint32(d.uvarint(math.MaxUint32))
	if flags&flagTCP != 0 {
		f.TCPState = d.byte()
		f.TCPFlags = [2]uint8{d.byte(), d.byte()}
		f.TCPWScale = [2]uint8{d.byte(), d.byte()}
	}
	if d.err != nil {
		return Flow{}, d.err
	}
	if len(d.b) != 0 {
		return Flow{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	if err := f.Valid(); err != nil {
		return Flow{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return f, nil
}

// reader consumes b; the first error sticks and later reads return zeros.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = fmt.Errorf("%w: truncated", ErrMalformed)
		r.b = nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) addrPort(six bool) netip.AddrPort {
	n := 4
	if six {
		n = 16
	}
	v := r.take(n + 2)
	if v == nil {
		return netip.AddrPort{}
	}
	var a netip.Addr
	if six {
		a = netip.AddrFrom16([16]byte(v[:16]))
	} else {
		a = netip.AddrFrom4([4]byte(v[:4]))
	}
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(v[n:]))
}

func (r *reader) uvarint(max uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: bad varint", ErrMalformed)
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	if v > max {
		r.err = fmt.Errorf("%w: value %d out of range", ErrMalformed, v)
		return 0
	}
	return v
}
