//go:build linux

package nft

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// Base chain names, and the chain of the outbound policy.
const (
	chainPre      = "prerouting"
	chainPost     = "postrouting"
	chainForward  = "forward"
	chainOutbound = "outbound"
	// chainFlowEvents and setFlowMarks: the closing-flow event mask
	// (flowevents_linux.go).
	chainFlowEvents = "flowevents"
	setFlowMarks    = "flowmarks"
	counterDenied   = "drop_outbound_denied"
)

// Object names of a service, derived from ServiceID so they survive
// reordering of the Spec.
func svcChain(id string) string { return "svc_" + id }
func slotsSet(id string) string { return "slots_" + id }
func allowSet(id string) string { return "allow_" + id }
func stickySet(id string, ap netip.AddrPort) string {
	return fmt.Sprintf("stk_%s_%08x", id, serverID(ap))
}
func serverChain(id string, ap netip.AddrPort) string {
	return fmt.Sprintf("srv_%s_%08x", id, serverID(ap))
}
func dropCounter(reason, id string) string {
	return "drop_" + reason + "_" + id
}

// connsSet names the set holding a service's flow count; the limit is
// part of the name (see service).
func connsSet(id string, limit uint32) string { return fmt.Sprintf("conns_%s_%d", id, limit) }

// rendered is a Spec as kernel objects, in the order they are created.
type rendered struct {
	table    *nftables.Table
	chains   []*nftables.Chain
	sets     []renderedSet
	counters []string
	rules    []*nftables.Rule
}

type renderedSet struct {
	set     *nftables.Set
	elems   []nftables.SetElement
	dynamic bool
}

func (r *rendered) chain(c *nftables.Chain) *nftables.Chain {
	c.Table = r.table
	r.chains = append(r.chains, c)
	return c
}

func (r *rendered) addSet(s *nftables.Set, elems []nftables.SetElement, dynamic bool) *nftables.Set {
	s.Table = r.table
	r.sets = append(r.sets, renderedSet{s, elems, dynamic})
	return s
}

func (r *rendered) rule(c *nftables.Chain, exprs ...[]expr.Any) {
	r.rules = append(r.rules, &nftables.Rule{Table: r.table, Chain: c, Exprs: cat(exprs...)})
}

// shape is what must match for an existing set to be reused.
func shape(s *nftables.Set) string {
	if s.IsMap && (s.DataType.GetNFTMagic() == nftables.TypeVerdict.GetNFTMagic() ||
		s.KeyType.GetNFTMagic() == nftables.TypeVerdict.GetNFTMagic()) {
		// google/nftables v0.3.0 reads a verdict map's data type into
		// KeyType; the only verdict maps are the slot tables (key: a
		// 4-byte index), so "verdict map" is shape enough.
		return fmt.Sprintf("vmap interval=%t size=%d", s.Interval, s.Size)
	}
	return fmt.Sprintf("key=%x/%d data=%x/%d map=%t interval=%t dynamic=%t timeout=%t size=%d",
		s.KeyType.GetNFTMagic(), s.KeyType.Bytes, s.DataType.GetNFTMagic(), s.DataType.Bytes,
		s.IsMap, s.Interval, s.Dynamic, s.HasTimeout, s.Size)
}

// render turns a valid Spec into kernel objects. It does no I/O.
func render(spec Spec) *rendered {
	r := &rendered{table: &nftables.Table{Name: spec.table(), Family: nftables.TableFamilyINet}}
	accept := nftables.ChainPolicyAccept
	pre := r.chain(&nftables.Chain{Name: chainPre, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	post := r.chain(&nftables.Chain{Name: chainPost, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	for _, svc := range spec.Services {
		r.service(pre, post, svc)
	}
	var tcpMarks []uint32
	for _, svc := range spec.Services {
		if svc.Proto == "tcp" {
			tcpMarks = append(tcpMarks, svc.Mark)
		}
	}
	if spec.Outbound != nil {
		r.outbound(post, *spec.Outbound)
		tcpMarks = append(tcpMarks, spec.Outbound.Mark)
	}
	r.flowEventRules(tcpMarks)
	return r
}

func (r *rendered) service(pre, post *nftables.Chain, svc Service) {
	id := ServiceID(svc.Name)
	f := famOf(svc.VIP)
	c := r.chain(&nftables.Chain{Name: svcChain(id)})
	r.rule(pre, matchNfproto(f), matchL4(l4num(svc.Proto)),
		[]expr.Any{loadAddr(f, f.daddr, r0), &expr.Cmp{Op: expr.CmpOpEq, Register: r0, Data: addrBytes(svc.VIP)}},
		matchDport(svc.Port), []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: c.Name}})

	noServer := dropCounter(ReasonNoServer, id)
	r.counters = append(r.counters, dropCounter(ReasonAllow, id), dropCounter(ReasonMaxConns, id), noServer)

	if len(svc.Allow) > 0 {
		var elems []nftables.SetElement
		for _, rg := range mergePrefixes(svc.Allow) {
			elems = append(elems, nftables.SetElement{Key: addrBytes(rg.first)})
			if end := rg.last.Next(); end.IsValid() {
				elems = append(elems, nftables.SetElement{Key: addrBytes(end), IntervalEnd: true})
			}
		}
		s := r.addSet(&nftables.Set{Name: allowSet(id), KeyType: f.addrT, Interval: true,
			KeyByteOrder: binaryutil.BigEndian, Comment: "tandem: clients allowed to " + svc.Name}, elems, false)
		r.rule(c, matchNfproto(f), []expr.Any{loadAddr(f, f.saddr, r0),
			&expr.Lookup{SourceRegister: r0, SetName: s.Name, Invert: true}},
			countDrop(dropCounter(ReasonAllow, id)))
	}
	r.rule(c, setFlow(svc.Mark))
	if svc.MaxConns > 0 {
		// The count lives in a set element keyed by the service's mark,
		// so it survives applies (a rule's own ct count would restart
		// from zero on every apply). The kernel cannot change an
		// element's limit: a new limit is a new set.
		set := r.addSet(&nftables.Set{Name: connsSet(id, svc.MaxConns), Dynamic: true, KeyType: nftables.TypeMark,
			KeyByteOrder: binaryutil.NativeEndian, Size: 16,
			Comment: "tandem: live flows of " + svc.Name}, nil, true)
		r.rule(c, []expr.Any{&expr.Ct{Key: expr.CtKeyMARK, Register: r0},
			&expr.Dynset{SrcRegKey: r0, SetName: set.Name, Operation: dynsetOpAdd,
				Exprs: []expr.Any{&expr.Connlimit{Count: svc.MaxConns, Flags: expr.NFT_CONNLIMIT_F_INV}}}},
			countDrop(dropCounter(ReasonMaxConns, id)))
	}
	if len(svc.Slots) > 0 {
		r.pickRules(c, svc, id, f)
	}
	r.rule(c, countDrop(noServer))
	if svc.SNAT.IsValid() {
		r.rule(post, matchNfproto(f), matchMark(svc.Mark), snat(svc.SNAT))
	}
}

// pickRules choose the server of a new flow.
//
// A verdict map slots_<id> sends slot index -> a chain per server,
// srv_<id>_<sid>, that DNATs to it. With persistence, each eligible server
// has a dynamic set stk_<id>_<sid> of (masked) clients: one rule per
// eligible server sends a client found in its set there and refreshes the
// entry, and the server's chain adds the clients it gets. A server that
// leaves Eligible loses its rule and its set in the same transaction, so
// no client can be sent to it by persistence afterwards.
//
// This shape is deliberate: every lookup key is read from the packet, so
// nft(8) 1.0.6 can list the rules (it aborts on a lookup keyed by another
// lookup's result), and no entry ever needs its data replaced (a dynset
// update refreshes an entry's timeout but never changes its data).
func (r *rendered) pickRules(c *nftables.Chain, svc Service, id string, f fam) {
	st := svc.Sticky
	var key []expr.Any
	eligible := map[netip.AddrPort]bool{}
	if st != nil {
		key = cat(matchNfproto(f), loadMasked(f, st.mask(f.v6)))
		for _, ap := range svc.Eligible {
			if eligible[ap] {
				continue
			}
			eligible[ap] = true
			set := r.addSet(&nftables.Set{Name: stickySet(id, ap), Dynamic: true, HasTimeout: true,
				KeyType: f.addrT, Size: st.maxEntries(),
				Comment: "tandem: clients of " + svc.Name + " kept on " + ap.String()}, nil, true)
			r.rule(c, key, []expr.Any{&expr.Lookup{SourceRegister: r0, SetName: set.Name}},
				stickyUpdate(set.Name, st.Timeout), dnat(f, ap))
		}
	}
	var slotElems []nftables.SetElement
	chains := map[netip.AddrPort]string{}
	for i, ap := range svc.Slots {
		name, ok := chains[ap]
		if !ok {
			name = serverChain(id, ap)
			chains[ap] = name
			sc := r.chain(&nftables.Chain{Name: name})
			if eligible[ap] {
				// Its own rule: when the set is full the update fails
				// and ends only this rule; the flow is still served.
				r.rule(sc, key, stickyUpdate(stickySet(id, ap), st.Timeout))
			}
			r.rule(sc, dnat(f, ap))
		}
		slotElems = append(slotElems, nftables.SetElement{Key: u32(uint32(i)),
			VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: name}})
	}
	slots := r.addSet(&nftables.Set{Name: slotsSet(id), IsMap: true, KeyType: nftables.TypeMark,
		KeyByteOrder: binaryutil.NativeEndian, DataType: nftables.TypeVerdict,
		Comment: "tandem: slot table of " + svc.Name}, slotElems, false)
	r.rule(c, matchNfproto(f), pick(svc, f, uint32(len(svc.Slots))),
		[]expr.Any{&expr.Lookup{SourceRegister: r0, DestRegister: 0, IsDestRegSet: true, SetName: slots.Name}})
}

// stickyUpdate adds the client in r0 to a persistence set, or refreshes
// its entry's timeout.
func stickyUpdate(set string, timeout time.Duration) []expr.Any {
	return []expr.Any{&expr.Dynset{SrcRegKey: r0, SetName: set, Operation: dynsetOpUpdate, Timeout: timeout}}
}

// Dynset operations: NFT_DYNSET_OP_ADD (add if absent) and
// NFT_DYNSET_OP_UPDATE (add, or refresh the timeout).
const (
	dynsetOpAdd    = 0
	dynsetOpUpdate = 1
)

func (r *rendered) outbound(post *nftables.Chain, o Outbound) {
	accept := nftables.ChainPolicyAccept
	fwd := r.chain(&nftables.Chain{Name: chainForward, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	out := r.chain(&nftables.Chain{Name: chainOutbound})
	r.counters = append(r.counters, counterDenied)
	ctBits := func(key expr.CtKey, bits uint32) []expr.Any {
		return []expr.Any{
			&expr.Ct{Key: key, Register: r0},
			&expr.Bitwise{SourceRegister: r0, DestRegister: r0, Len: 4, Mask: u32(bits), Xor: u32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: r0, Data: u32(0)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}
	}
	r.rule(fwd, ctBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED))
	r.rule(fwd, ctBits(expr.CtKeySTATUS, ipsDstNAT))
	ifname := []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: r0},
		&expr.Cmp{Op: expr.CmpOpEq, Register: r0, Data: append([]byte(o.InIface), 0)}}
	for _, src := range o.Sources {
		f := famOf(src.Addr())
		r.rule(fwd, ifname, matchNfproto(f), matchPrefix(f, f.saddr, src),
			[]expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: out.Name}})
	}
	for _, ar := range o.Allow {
		f := famOf(ar.Dest.Addr())
		protos := []string{ar.Proto}
		if ar.Proto == "" && len(ar.Ports) > 0 {
			protos = []string{"tcp", "udp"}
		}
		for _, proto := range protos {
			base := cat(matchNfproto(f), matchPrefix(f, f.daddr, ar.Dest))
			if proto != "" {
				base = cat(base, matchL4(l4num(proto)))
			}
			ok := cat(setFlow(o.Mark), []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})
			if len(ar.Ports) == 0 {
				r.rule(out, base, ok)
				continue
			}
			ports := slices.Clone(ar.Ports)
			slices.Sort(ports)
			for _, p := range slices.Compact(ports) {
				r.rule(out, base, matchDport(p), ok)
			}
		}
	}
	r.rule(out, countDrop(counterDenied))
	if o.SNAT.IsValid() {
		r.rule(post, matchNfproto(famOf(o.SNAT)), matchMark(o.Mark), snat(o.SNAT))
	}
}

// ipsDstNAT is IPS_DST_NAT of the conntrack status bits.
const ipsDstNAT = 1 << 5
