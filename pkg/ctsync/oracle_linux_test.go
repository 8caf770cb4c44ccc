package ctsync

import (
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
)

// tiMoDecode decodes a ctnetlink entry message with ti-mo/conntrack: the
// oracle decodeEntry is checked against.
func tiMoDecode(m netlink.Message) (EventType, Flow, error) {
	var ev conntrack.Event
	if err := ev.Unmarshal(m); err != nil {
		return 0, Flow{}, err
	}
	if ev.Flow == nil {
		return 0, Flow{}, fmt.Errorf("not a conntrack entry message")
	}
	var t EventType
	switch ev.Type {
	case conntrack.EventNew:
		t = New
	case conntrack.EventUpdate:
		t = Update
	case conntrack.EventDestroy:
		t = Destroy
	default:
		return 0, Flow{}, fmt.Errorf("unexpected conntrack event type %v", ev.Type)
	}
	f, err := fromConntrack(ev.Flow)
	return t, f, err
}

func fromConntrack(c *conntrack.Flow) (Flow, error) {
	o, r := c.TupleOrig, c.TupleReply
	if o.Proto.Protocol != r.Proto.Protocol {
		return Flow{}, fmt.Errorf("tuples of different protocols")
	}
	f := Flow{
		Proto:   o.Proto.Protocol,
		Orig:    Tuple{Src: addrPort(o.IP.SourceAddress, o.Proto.SourcePort), Dst: addrPort(o.IP.DestinationAddress, o.Proto.DestinationPort)},
		Reply:   Tuple{Src: addrPort(r.IP.SourceAddress, r.Proto.SourcePort), Dst: addrPort(r.IP.DestinationAddress, r.Proto.DestinationPort)},
		Mark:    c.Mark,
		Zone:    c.Zone,
		Status:  uint32(c.Status),
		Timeout: c.Timeout,
	}
	if tcp := c.ProtoInfo.TCP; tcp != nil {
		f.TCPState = tcp.State
		// Each flags attribute is struct nf_ct_tcp_flags {flags, mask},
		// read by ti-mo as one big-endian uint16.
		f.TCPFlags = [2]uint8{uint8(tcp.OriginalFlags >> 8), uint8(tcp.ReplyFlags >> 8)}
		f.TCPWScale = [2]uint8{tcp.OriginalWindowScale, tcp.ReplyWindowScale}
	}
	if err := f.Valid(); err != nil {
		return Flow{}, err
	}
	return f, nil
}

func addrPort(a netip.Addr, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(a.Unmap(), port)
}
