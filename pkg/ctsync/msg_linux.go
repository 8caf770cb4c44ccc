package ctsync

import (
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
)

// settableStatus are the status bits ctnetlink lets userspace set; they
// can only be set, never cleared (nf_ct_change_status_common).
const settableStatus = StatusSeenReply | StatusAssured

// syncedTCPFlags are the TCP flags Write copies; BE_LIBERAL is always set
// on both directions so the window tracking of an entry that never saw the
// handshake does not declare mid-stream packets invalid.
const syncedTCPFlags = TCPFlagWindowScale | TCPFlagSackPerm | TCPFlagCloseInit | TCPFlagBeLiberal

func family(f Flow) netfilter.ProtoFamily {
	if f.Is6() {
		return netfilter.ProtoIPv6
	}
	return netfilter.ProtoIPv4
}

// newFlowMessage builds the IPCTNL_MSG_CT_NEW that creates f (create) or
// updates the entry with f's original tuple (!create).
//
// Creating: the kernel builds the NAT binding only from CTA_NAT_DST and
// CTA_NAT_SRC (ctnetlink_setup_nat). nf_nat_setup_info starts from the
// inverse of the reply tuple it was given and records the DST_NAT/SRC_NAT
// status bits only when the manipulation changes it, so the reply tuple
// sent is the inverse of the original and the NAT attributes carry the
// translated addresses and ports (exact, min = max); the kernel then
// derives the same reply tuple the master has.
//
// Updating: the kernel changes timeout, status, protoinfo and mark; NAT
// attributes are refused (EOPNOTSUPP), so none are sent.
//
// The status sent always has CONFIRMED set, as the entry's has when
// ctnetlink applies it: a difference in CONFIRMED is refused with EBUSY.
func newFlowMessage(f Flow, create, withStatus bool) (netlink.Message, error) {
	if err := f.Valid(); err != nil {
		return netlink.Message{}, err
	}
	if f.Proto != ProtoTCP && f.Proto != ProtoUDP {
		return netlink.Message{}, fmt.Errorf("%w: protocol %d (only tcp and udp can be written)", ErrInvalidFlow, f.Proto)
	}
	ae := netfilter.NewAttributeEncoder()
	ae.Nested(ctaTupleOrig, tupleEncoder(f.Proto, f.Orig))
	if create {
		ae.Nested(ctaTupleReply, tupleEncoder(f.Proto, f.Orig.Inverse()))
	}
	if f.Zone != 0 {
		ae.Uint16(ctaZone, f.Zone)
	}
	timeout := f.Timeout
	if create && timeout == 0 {
		timeout = defaultCreateTimeoutSec
	}
	if timeout != 0 {
		ae.Uint32(ctaTimeout, timeout)
	}
	if withStatus {
		ae.Uint32(ctaStatus, StatusConfirmed|f.Status&settableStatus)
	}
	ae.Uint32(ctaMark, f.Mark)
	if f.Proto == ProtoTCP && (create || f.TCPState != TCPNone) {
		ae.Nested(ctaProtoInfo, tcpInfoEncoder(f))
	}
	if create {
		if to, ok := f.DNAT(); ok {
			ae.Nested(ctaNATDst, natEncoder(to))
		}
		if to, ok := f.SNAT(); ok {
			ae.Nested(ctaNATSrc, natEncoder(to))
		}
	}
	flags := netlink.Request | netlink.Acknowledge
	if create {
		flags |= netlink.Create | netlink.Excl
	}
	return netfilter.EncodeNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: msgCTNew,
		Family:      family(f),
		Flags:       flags,
	}, ae)
}

func tupleEncoder(proto uint8, t Tuple) func(*netlink.AttributeEncoder) error {
	return func(ae *netlink.AttributeEncoder) error {
		ae.Nested(ctaTupleIP, func(ae *netlink.AttributeEncoder) error {
			if t.Src.Addr().Is4() {
				s, d := t.Src.Addr().As4(), t.Dst.Addr().As4()
				ae.Bytes(ctaIPv4Src, s[:])
				ae.Bytes(ctaIPv4Dst, d[:])
			} else {
				s, d := t.Src.Addr().As16(), t.Dst.Addr().As16()
				ae.Bytes(ctaIPv6Src, s[:])
				ae.Bytes(ctaIPv6Dst, d[:])
			}
			return nil
		})
		ae.Nested(ctaTupleProto, func(ae *netlink.AttributeEncoder) error {
			ae.Uint8(ctaProtoNum, proto)
			ae.Uint16(ctaProtoSrcPort, t.Src.Port())
			ae.Uint16(ctaProtoDstPort, t.Dst.Port())
			return nil
		})
		return nil
	}
}

// tcpInfoEncoder sets the TCP state (ESTABLISHED when the flow does not
// say), the synced flags plus BE_LIBERAL on both directions, and the
// window scales (the kernel applies them only when both directions have
// the WINDOW_SCALE flag).
func tcpInfoEncoder(f Flow) func(*netlink.AttributeEncoder) error {
	return func(ae *netlink.AttributeEncoder) error {
		ae.Nested(ctaProtoInfoTCP, func(ae *netlink.AttributeEncoder) error {
			state := f.TCPState
			if state == TCPNone {
				state = TCPEstablished
			}
			ae.Uint8(ctaProtoInfoTCPState, state)
			ae.Uint8(ctaProtoInfoTCPWScaleO, f.TCPWScale[0])
			ae.Uint8(ctaProtoInfoTCPWScaleR, f.TCPWScale[1])
			// struct nf_ct_tcp_flags { __u8 flags; __u8 mask; }
			ae.Bytes(ctaProtoInfoTCPFlagsO, []byte{f.TCPFlags[0]&syncedTCPFlags | TCPFlagBeLiberal, syncedTCPFlags})
			ae.Bytes(ctaProtoInfoTCPFlagsR, []byte{f.TCPFlags[1]&syncedTCPFlags | TCPFlagBeLiberal, syncedTCPFlags})
			return nil
		})
		return nil
	}
}

// natEncoder is one exact NAT range: address and port, min = max.
func natEncoder(to netip.AddrPort) func(*netlink.AttributeEncoder) error {
	return func(ae *netlink.AttributeEncoder) error {
		if a := to.Addr(); a.Is4() {
			v := a.As4()
			ae.Bytes(ctaNATv4MinIP, v[:])
			ae.Bytes(ctaNATv4MaxIP, v[:])
		} else {
			v := a.As16()
			ae.Bytes(ctaNATv6MinIP, v[:])
			ae.Bytes(ctaNATv6MaxIP, v[:])
		}
		ae.Nested(ctaNATProto, func(ae *netlink.AttributeEncoder) error {
			ae.Uint16(ctaProtoNATPortMin, to.Port())
			ae.Uint16(ctaProtoNATPortMax, to.Port())
			return nil
		})
		return nil
	}
}

// keyMessage builds a GET or DELETE of the entry with f's original tuple.
func keyMessage(f Flow, msgType netfilter.MessageType) (netlink.Message, error) {
	if err := f.Valid(); err != nil {
		return netlink.Message{}, err
	}
	ae := netfilter.NewAttributeEncoder()
	ae.Nested(ctaTupleOrig, tupleEncoder(f.Proto, f.Orig))
	if f.Zone != 0 {
		ae.Uint16(ctaZone, f.Zone)
	}
	return netfilter.EncodeNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: msgType,
		Family:      family(f),
		Flags:       netlink.Request | netlink.Acknowledge,
	}, ae)
}

// dumpMessage asks for every entry whose mark&mask equals mark&mask, both
// families. The kernel compares (ct->mark & mask) with the value as sent,
// so the value is masked here.
func dumpMessage(mark, mask uint32) (netlink.Message, error) {
	ae := netfilter.NewAttributeEncoder()
	ae.Uint32(ctaMark, mark&mask)
	ae.Uint32(ctaMarkMask, mask)
	return netfilter.EncodeNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: msgCTGet,
		Family:      netfilter.ProtoUnspec,
		Flags:       netlink.Request | netlink.Dump,
	}, ae)
}
