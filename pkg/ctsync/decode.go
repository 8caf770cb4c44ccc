package ctsync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// decode.go reads ctnetlink entry messages (events, dump parts, GET
// answers) without allocating: a dump of 100,000 entries through
// ti-mo/conntrack's decoder allocated ~2 KB and ~40 objects an entry. The
// tests check it against ti-mo/conntrack on kernel messages and fuzzed
// input.

// Netlink attribute header flags and message flags used here.
const (
	nlaFNested   = 0x8000
	nlaFNetOrder = 0x4000
	nlaTypeMask  = ^uint16(nlaFNested | nlaFNetOrder)
	nlmFCreate   = 0x400
	nlmFExcl     = 0x200
	nfnlCTNet    = 1 // NFNL_SUBSYS_CTNETLINK
)

var errEntry = errors.New("malformed ctnetlink entry")

// attrs iterates over netlink attributes in b. A malformed header ends
// the iteration with ok false and err set.
type attrs struct {
	b   []byte
	err error
}

func (a *attrs) next() (typ uint16, data []byte, ok bool) {
	if len(a.b) == 0 || a.err != nil {
		return 0, nil, false
	}
	if len(a.b) < 4 {
		a.err = fmt.Errorf("%w: %d stray bytes", errEntry, len(a.b))
		return 0, nil, false
	}
	n := int(binary.NativeEndian.Uint16(a.b))
	typ = binary.NativeEndian.Uint16(a.b[2:]) & nlaTypeMask
	if n < 4 || n > len(a.b) {
		a.err = fmt.Errorf("%w: attribute %d length %d of %d", errEntry, typ, n, len(a.b))
		return 0, nil, false
	}
	data = a.b[4:n]
	if al := (n + 3) &^ 3; al < len(a.b) {
		a.b = a.b[al:]
	} else {
		a.b = nil
	}
	return typ, data, true
}

// decodeEntry decodes one ctnetlink message: its netlink type and flags
// and its payload (nfgenmsg and attributes).
func decodeEntry(typ, flags uint16, data []byte) (EventType, Flow, error) {
	if typ>>8 != nfnlCTNet {
		return 0, Flow{}, fmt.Errorf("%w: subsystem %d", errEntry, typ>>8)
	}
	var et EventType
	switch typ & 0xff {
	case msgCTNew:
		et = Update
		if flags&(nlmFCreate|nlmFExcl) != 0 {
			et = New
		}
	case msgCTDelete:
		et = Destroy
	default:
		return 0, Flow{}, fmt.Errorf("%w: message type %d", errEntry, typ&0xff)
	}
	if len(data) < 4 {
		return 0, Flow{}, fmt.Errorf("%w: short message", errEntry)
	}
	var f Flow
	var haveOrig, haveReply bool
	var origProto, replyProto uint8
	a := attrs{b: data[4:]}
	for {
		t, v, ok := a.next()
		if !ok {
			break
		}
		var err error
		switch t {
		case ctaTupleOrig:
			f.Orig, origProto, err = decodeTuple(v)
			haveOrig = true
		case ctaTupleReply:
			f.Reply, replyProto, err = decodeTuple(v)
			haveReply = true
		case ctaStatus:
			f.Status, err = be32(v)
		case ctaTimeout:
			f.Timeout, err = be32(v)
		case ctaMark:
			f.Mark, err = be32(v)
		case ctaZone:
			if len(v) != 2 {
				err = fmt.Errorf("%w: zone length %d", errEntry, len(v))
			}
			if err == nil {
				f.Zone = binary.BigEndian.Uint16(v)
			}
		case ctaProtoInfo:
			err = decodeProtoInfo(v, &f)
		}
		if err != nil {
			return 0, Flow{}, err
		}
	}
	if a.err != nil {
		return 0, Flow{}, a.err
	}
	if !haveOrig || !haveReply {
		return 0, Flow{}, fmt.Errorf("%w: tuple missing", errEntry)
	}
	if origProto != replyProto {
		return 0, Flow{}, fmt.Errorf("%w: tuples of protocols %d and %d", errEntry, origProto, replyProto)
	}
	f.Proto = origProto
	if err := f.Valid(); err != nil {
		return 0, Flow{}, fmt.Errorf("%w: %w", errEntry, err)
	}
	return et, f, nil
}

func be32(v []byte) (uint32, error) {
	if len(v) != 4 {
		return 0, fmt.Errorf("%w: u32 of length %d", errEntry, len(v))
	}
	return binary.BigEndian.Uint32(v), nil
}

func decodeTuple(b []byte) (Tuple, uint8, error) {
	var t Tuple
	var src, dst netip.Addr
	var sport, dport uint16
	var proto uint8
	var haveIP, haveProto bool
	a := attrs{b: b}
	for {
		typ, v, ok := a.next()
		if !ok {
			break
		}
		switch typ {
		case ctaTupleIP:
			haveIP = true
			ia := attrs{b: v}
			for {
				it, iv, ok := ia.next()
				if !ok {
					break
				}
				var p *netip.Addr
				switch it {
				case ctaIPv4Src, ctaIPv6Src:
					p = &src
				case ctaIPv4Dst, ctaIPv6Dst:
					p = &dst
				default:
					continue
				}
				switch {
				case (it == ctaIPv4Src || it == ctaIPv4Dst) && len(iv) == 4:
					*p = netip.AddrFrom4([4]byte(iv))
				case (it == ctaIPv6Src || it == ctaIPv6Dst) && len(iv) == 16:
					*p = netip.AddrFrom16([16]byte(iv))
				default:
					return t, 0, fmt.Errorf("%w: address attribute %d of length %d", errEntry, it, len(iv))
				}
			}
			if ia.err != nil {
				return t, 0, ia.err
			}
		case ctaTupleProto:
			haveProto = true
			pa := attrs{b: v}
			for {
				pt, pv, ok := pa.next()
				if !ok {
					break
				}
				switch {
				case pt == ctaProtoNum && len(pv) == 1:
					proto = pv[0]
				case (pt == ctaProtoSrcPort || pt == ctaProtoDstPort) && len(pv) == 2:
					if pt == ctaProtoSrcPort {
						sport = binary.BigEndian.Uint16(pv)
					} else {
						dport = binary.BigEndian.Uint16(pv)
					}
				case pt == ctaProtoNum || pt == ctaProtoSrcPort || pt == ctaProtoDstPort:
					return t, 0, fmt.Errorf("%w: proto attribute %d of length %d", errEntry, pt, len(pv))
				}
			}
			if pa.err != nil {
				return t, 0, pa.err
			}
		}
	}
	if a.err != nil {
		return t, 0, a.err
	}
	if !haveIP || !haveProto {
		return t, 0, fmt.Errorf("%w: tuple without address or protocol", errEntry)
	}
	t.Src, t.Dst = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	return t, proto, nil
}

func decodeProtoInfo(b []byte, f *Flow) error {
	a := attrs{b: b}
	for {
		typ, v, ok := a.next()
		if !ok {
			break
		}
		if typ != ctaProtoInfoTCP {
			continue
		}
		ta := attrs{b: v}
		for {
			tt, tv, ok := ta.next()
			if !ok {
				break
			}
			switch tt {
			case ctaProtoInfoTCPState, ctaProtoInfoTCPWScaleO, ctaProtoInfoTCPWScaleR:
				if len(tv) != 1 {
					return fmt.Errorf("%w: tcp attribute %d of length %d", errEntry, tt, len(tv))
				}
				switch tt {
				case ctaProtoInfoTCPState:
					f.TCPState = tv[0]
				case ctaProtoInfoTCPWScaleO:
					f.TCPWScale[0] = tv[0]
				default:
					f.TCPWScale[1] = tv[0]
				}
			case ctaProtoInfoTCPFlagsO, ctaProtoInfoTCPFlagsR:
				if len(tv) != 2 { // struct nf_ct_tcp_flags {flags, mask}
					return fmt.Errorf("%w: tcp flags of length %d", errEntry, len(tv))
				}
				if tt == ctaProtoInfoTCPFlagsO {
					f.TCPFlags[0] = tv[0]
				} else {
					f.TCPFlags[1] = tv[0]
				}
			}
		}
		if ta.err != nil {
			return ta.err
		}
	}
	return a.err
}
