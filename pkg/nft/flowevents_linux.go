package nft

import (
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// The conntrack events (the kernel's enum ip_conntrack_events) a flow of
// Tandem's may report.
const (
	ctEventNew       = 0
	ctEventDestroy   = 2
	ctEventAssured   = 4
	ctEventProtoinfo = 5
)

// flowEvents is the event mask Tandem sets on the first packet of each of
// its flows (nft's `ct event set new,assured,destroy`): the flow's birth,
// the moment it is established (for TCP: the handshake's last ACK, the
// entry in ESTABLISHED) and its end. The TCP states in between are left
// out, except where a flow starts to close (closingEvents): a short
// connection reports four events instead of eight, and each event costs
// the node a read and the peer a write.
const flowEvents = 1<<ctEventNew | 1<<ctEventAssured | 1<<ctEventDestroy

// closingEvents adds the TCP state changes for the packets that carry a
// FIN or a RST. The peer must learn that a flow is closing: an entry it
// holds as ESTABLISHED would otherwise outlive the connection by days
// (the established timeout) on a box that takes over before the master's
// DESTROY (after TIME_WAIT) came. Packets without FIN or RST in a closing
// flow put the mask back, so of the FIN dance the peer sees FIN_WAIT and
// LAST_ACK (CLOSE after a RST), each with its short timeout.
const closingEvents = flowEvents | 1<<ctEventProtoinfo

// closingWindow bounds the flows whose mask a packet without FIN or RST
// puts back: those whose entry expires sooner than this (a closing or
// handshaking flow; an ESTABLISHED one has days), so a data packet of an
// established flow costs two failed compares and no write.
const closingWindowMs = 130_000

const (
	tcpFlagFIN = 0x01
	tcpFlagRST = 0x04
)

// setFlow marks a new flow as Tandem's and keeps its events to flowEvents.
// The mask is set while the entry is unconfirmed (a nat chain sees only a
// flow's first packet), where the kernel takes it.
func setFlow(mark uint32) []expr.Any {
	return append(setMark(mark), setEvents(flowEvents)...)
}

func setEvents(mask uint32) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: r0, Data: u32(mask)},
		&expr.Ct{Key: expr.CtKeyEVENTMASK, Register: r0, SourceRegister: true},
	}
}

// flowEventRules adds the forward-hook chain that widens a TCP flow's
// event mask at its FIN or RST and narrows it again after (see
// closingEvents). marks are the ct marks of Tandem's TCP flows.
func (r *rendered) flowEventRules(marks []uint32) {
	if len(marks) == 0 {
		return
	}
	var elems []nftables.SetElement
	for _, m := range marks {
		elems = append(elems, nftables.SetElement{Key: u32(m)})
	}
	set := r.addSet(&nftables.Set{Name: setFlowMarks, KeyType: nftables.TypeMark,
		KeyByteOrder: binaryutil.NativeEndian, Comment: "tandem: ct marks of the tcp flows"}, elems, false)
	accept := nftables.ChainPolicyAccept
	c := r.chain(&nftables.Chain{Name: chainFlowEvents, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 10),
		Policy: &accept})
	flags := func(op expr.CmpOp) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: r0, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: r0, DestRegister: r0, Len: 1, Mask: []byte{tcpFlagFIN | tcpFlagRST}, Xor: []byte{0}},
			&expr.Cmp{Op: op, Register: r0, Data: []byte{0}},
		}
	}
	ours := []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: r0},
		&expr.Lookup{SourceRegister: r0, SetName: set.Name},
	}
	closingSoon := []expr.Any{
		&expr.Ct{Key: expr.CtKeyEXPIRATION, Register: r0},
		&expr.Byteorder{SourceRegister: r0, DestRegister: r0, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Cmp{Op: expr.CmpOpLt, Register: r0, Data: binaryutil.BigEndian.PutUint32(closingWindowMs)},
	}
	r.rule(c, matchL4(6), flags(expr.CmpOpNeq), ours, setEvents(closingEvents))
	r.rule(c, matchL4(6), flags(expr.CmpOpEq), closingSoon, ours, setEvents(flowEvents))
}
