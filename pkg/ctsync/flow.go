package ctsync

import (
	"errors"
	"fmt"
	"net/netip"
)

// Tuple is one direction of a connection as conntrack sees it.
type Tuple struct{ Src, Dst netip.AddrPort }

// Inverse returns the tuple of the other direction of an un-NATed flow.
func (t Tuple) Inverse() Tuple { return Tuple{Src: t.Dst, Dst: t.Src} }

// Flow is one conntrack entry, with the NAT binding carried by the reply
// tuple: a reply source other than the original destination means the
// flow was DNATed to it (the server), a reply destination other than the
// original source means it was SNATed to it.
type Flow struct {
	Proto uint8 // 6 tcp, 17 udp
	Orig  Tuple // client -> VIP:port
	Reply Tuple // server -> client (or -> the SNAT address)
	Mark  uint32
	Zone  uint16
	// Status is the kernel's status word as read (Status* bits). Write
	// sends only what the kernel lets userspace set: SEEN_REPLY and
	// ASSURED; the NAT bits follow from the reply tuple.
	Status uint32
	// TCPState is the conntrack TCP state (TCPEstablished, ...); 0
	// (TCPNone) means "not reported": update events carry the TCP state
	// only when it changed, and UDP has none.
	TCPState uint8
	// TCPFlags are the conntrack TCP flags seen per direction (original,
	// reply): TCPFlagWindowScale, TCPFlagSackPerm, ...
	TCPFlags [2]uint8
	// TCPWScale are the window scales per direction (original, reply).
	TCPWScale [2]uint8
	Timeout   uint32 // seconds left; 0 = not reported (destroy events)
}

// Conntrack TCP states (enum tcp_conntrack).
const (
	TCPNone uint8 = iota
	TCPSynSent
	TCPSynRecv
	TCPEstablished
	TCPFinWait
	TCPCloseWait
	TCPLastAck
	TCPTimeWait
	TCPClose
	TCPSynSent2
	tcpStateMax // the kernel rejects a state at or above this (EINVAL)
)

// Conntrack status bits (enum ip_conntrack_status).
const (
	StatusExpected   uint32 = 1 << 0
	StatusSeenReply  uint32 = 1 << 1
	StatusAssured    uint32 = 1 << 2
	StatusConfirmed  uint32 = 1 << 3
	StatusSrcNAT     uint32 = 1 << 4
	StatusDstNAT     uint32 = 1 << 5
	StatusSeqAdjust  uint32 = 1 << 6
	StatusSrcNATDone uint32 = 1 << 7
	StatusDstNATDone uint32 = 1 << 8
	StatusDying      uint32 = 1 << 9
	StatusOffload    uint32 = 1 << 14
)

// Conntrack TCP flags per direction (IP_CT_TCP_FLAG_*).
const (
	TCPFlagWindowScale uint8 = 0x01
	TCPFlagSackPerm    uint8 = 0x02
	TCPFlagCloseInit   uint8 = 0x04
	TCPFlagBeLiberal   uint8 = 0x08
)

// Protocols Write knows how to create.
const (
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// EventType says what happened to a flow.
type EventType uint8

// Event types. Overflow carries no flow: events were lost (the kernel
// dropped some because the socket buffer was full, or the consumer was too
// slow); the consumer must resynchronise from a full Dump.
const (
	New EventType = iota + 1
	Update
	Destroy
	Overflow
)

func (t EventType) String() string {
	switch t {
	case New:
		return "new"
	case Update:
		return "update"
	case Destroy:
		return "destroy"
	case Overflow:
		return "overflow"
	}
	return fmt.Sprintf("EventType(%d)", uint8(t))
}

// Event is one conntrack event of a Tandem flow.
type Event struct {
	Type EventType
	Flow Flow
}

// Key identifies a flow in a table: the kernel looks entries up by
// protocol, zone and original tuple. It is comparable, for maps.
type Key struct {
	Proto uint8
	Zone  uint16
	Orig  Tuple
}

// Key returns f's lookup key.
func (f Flow) Key() Key { return Key{Proto: f.Proto, Zone: f.Zone, Orig: f.Orig} }

// DNAT returns the address the flow's destination was rewritten to (the
// server) and whether it was rewritten at all.
func (f Flow) DNAT() (netip.AddrPort, bool) {
	return f.Reply.Src, f.Reply.Src != f.Orig.Dst
}

// SNAT returns the address the flow's source was rewritten to and whether
// it was rewritten at all.
func (f Flow) SNAT() (netip.AddrPort, bool) {
	return f.Reply.Dst, f.Reply.Dst != f.Orig.Src
}

// Server is where the flow goes: the reply tuple's source.
func (f Flow) Server() netip.AddrPort { return f.Reply.Src }

// Is6 reports whether the flow is IPv6.
func (f Flow) Is6() bool { return f.Orig.Src.Addr().Is6() }

func (f Flow) String() string {
	s := fmt.Sprintf("proto=%d %s->%s reply %s->%s mark=%#x", f.Proto, f.Orig.Src, f.Orig.Dst, f.Reply.Src, f.Reply.Dst, f.Mark)
	if f.Zone != 0 {
		s += fmt.Sprintf(" zone=%d", f.Zone)
	}
	return s
}

// ErrInvalidFlow is wrapped by the errors of flows that cannot be encoded
// or written: addresses missing, of mixed families, IPv4-mapped IPv6 or
// with an IPv6 zone, protocol 0, or a TCP state out of range.
var ErrInvalidFlow = errors.New("invalid flow")

// Valid reports whether f can be encoded and written.
func (f Flow) Valid() error {
	if f.Proto == 0 {
		return fmt.Errorf("%w: protocol 0", ErrInvalidFlow)
	}
	if f.TCPState >= tcpStateMax {
		return fmt.Errorf("%w: tcp state %d", ErrInvalidFlow, f.TCPState)
	}
	six := f.Orig.Src.Addr().Is6()
	for _, ap := range [...]netip.AddrPort{f.Orig.Src, f.Orig.Dst, f.Reply.Src, f.Reply.Dst} {
		a := ap.Addr()
		switch {
		case !a.IsValid():
			return fmt.Errorf("%w: missing address", ErrInvalidFlow)
		case a.Is6() != six:
			return fmt.Errorf("%w: mixed address families", ErrInvalidFlow)
		case a.Is4In6():
			return fmt.Errorf("%w: IPv4-mapped address %s", ErrInvalidFlow, a)
		case a.Zone() != "":
			return fmt.Errorf("%w: address %s has a zone", ErrInvalidFlow, a)
		}
	}
	return nil
}

// Matches reports whether mark selects f under mask, as the kernel's dump
// filter does: f.Mark&mask == mark&mask.
func (f Flow) Matches(mark, mask uint32) bool { return f.Mark&mask == mark&mask }
