// Package nft owns one nftables table (family inet, "tandem" by default)
// that forwards the packets of nat clusters in the kernel: a cluster's
// VIP:port is DNATed to a server picked from a slot table, flows are
// marked with the cluster's ct mark so conntrack replication finds them,
// source-IP persistence lives in kernel sets (one per eligible server),
// and server-initiated connections can be policed and SNATed on their way
// out.
//
// The whole ruleset is described by a Spec; Manager.Apply makes the
// kernel match it in one netlink transaction, keeping the table and its
// dynamic maps (persistence entries, connection counts) across applies, so
// a health change never resets sessions or forgets stickiness. Both boxes
// of a pair hold the same rules; only the VIP moves.
//
// The kernel side (google/nftables over netlink) is in the _linux.go
// files; other platforms get ErrUnsupported. Validation, naming and the
// reconcile plan are plain Go and tested without root.
package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"time"
)

// DefaultTable is the table name used when Spec.Table is empty.
const DefaultTable = "tandem"

// DefaultStickyEntries bounds a persistence map when Sticky.MaxEntries is 0.
const DefaultStickyEntries = 1 << 18

// ErrUnsupported is returned (wrapped) on platforms other than Linux.
var ErrUnsupported = errors.New("nft: unsupported platform")

// ErrForeignTable is returned (wrapped) when a table of our name exists
// but was not created by Tandem: we never rewrite someone else's rules.
var ErrForeignTable = errors.New("nft: table exists and is not Tandem's")

// ErrUnknownService is returned (wrapped) by the persistence calls for a
// service name the last applied Spec does not have (or has no Sticky).
var ErrUnknownService = errors.New("nft: unknown service")

type unsupportedError struct{}

func (unsupportedError) Error() string { return "nft: unsupported on " + runtime.GOOS }
func (unsupportedError) Unwrap() error { return ErrUnsupported }

// Spec is the whole desired ruleset of the table.
type Spec struct {
	// Table is the nftables table (family inet); empty means DefaultTable.
	Table string
	// Services are the nat clusters, each one VIP:port/proto.
	Services []Service
	// Outbound, if set, polices connections the servers open themselves;
	// nil leaves forwarding on the box alone (no forward chain at all).
	Outbound *Outbound
}

// Service is one nat cluster.
type Service struct {
	// Name is the cluster name. Kernel object names derive from it (see
	// ServiceID), not from the position in Services, so reordering or
	// removing clusters keeps the persistence maps of the others.
	Name string
	// Mark is the ct mark set on every flow of the service (all 32 bits:
	// the table owns the ct mark of the flows it handles); replication
	// finds the flows by it and the SNAT rule matches it. Non-zero and
	// unique in the Spec.
	Mark uint32
	VIP  netip.Addr
	Port uint16
	// Proto is "tcp" or "udp".
	Proto string
	// Pick computes the slot index of a new flow.
	Pick Pick
	// Seed seeds the jhash of PickSourceHash and PickFiveTuple; both
	// boxes use the same seed so a flow maps to the same slot on either.
	Seed uint32
	// Slots is the slot table: index -> server, same family as VIP. A
	// server may appear many times (weights, Maglev). Empty: no healthy
	// server, new flows are dropped and counted ("no_server").
	Slots []netip.AddrPort
	// Eligible are the servers persistence may still send a client's new
	// flows to (healthy and enabled; a draining server belongs in neither
	// Slots nor Eligible). Each has a persistence set; a server that
	// leaves Eligible loses its set, and its clients are picked afresh.
	// Only used with Sticky.
	Eligible []netip.AddrPort
	// SNAT, if valid, also rewrites the source of the server-side flow to
	// this address (return: snat); invalid means the servers route back
	// through the pair (return: gateway).
	SNAT netip.Addr
	// Allow, if not empty, admits only clients in these prefixes (same
	// family as VIP); others are dropped and counted ("allow").
	Allow []netip.Prefix
	// MaxConns, if not 0, drops new flows while this many flows of the
	// service are live in conntrack (counted as "max_conns").
	MaxConns uint32
	// Sticky, if set, keeps a client (by masked source address) on the
	// server it was first sent to.
	Sticky *Sticky
}

// Pick is how a new flow's slot index is computed.
type Pick int

const (
	// PickRoundRobin takes the next slot (numgen inc mod len(Slots)).
	PickRoundRobin Pick = iota
	// PickSourceHash hashes the full client address (jhash, Seed).
	PickSourceHash
	// PickFiveTuple hashes saddr . sport . daddr . dport (jhash, Seed);
	// with a Maglev slot table built by the caller this is consistent
	// hashing, identical on both boxes.
	PickFiveTuple
)

func (p Pick) String() string {
	switch p {
	case PickRoundRobin:
		return "round_robin"
	case PickSourceHash:
		return "source_hash"
	case PickFiveTuple:
		return "five_tuple"
	}
	return fmt.Sprintf("Pick(%d)", int(p))
}

// Sticky is source-IP persistence held in the kernel: a client (its
// masked address) is kept on the server its first flow went to while new
// flows keep coming within Timeout.
type Sticky struct {
	// Mask is the client prefix length entries are keyed by; 0 means a
	// whole address (32 or 128).
	Mask int
	// Timeout is how long an entry lives after the last new flow that
	// used it (packets of established flows do not refresh it). At least
	// a millisecond (the kernel's unit).
	Timeout time.Duration
	// MaxEntries bounds the set of each server; 0 means
	// DefaultStickyEntries. When full, new clients are still served, just
	// not remembered.
	MaxEntries uint32
}

// Outbound polices connections the servers open themselves (return:
// gateway, the pair is their router).
type Outbound struct {
	// InIface is the inside interface, the servers' side.
	InIface string
	// Sources are the servers' subnets.
	Sources []netip.Prefix
	// SNAT, if valid, rewrites such connections' source to this address
	// on the way out (only for flows of its family).
	SNAT netip.Addr
	// Allow lists what servers may open; empty means nothing (replies
	// still flow). Others are dropped and counted ("outbound", "denied").
	Allow []OutRule
	// Mark is the ct mark of allowed outbound flows, so they replicate too.
	Mark uint32
}

// OutRule admits server-initiated connections to Dest.
type OutRule struct {
	Dest netip.Prefix
	// Proto is "tcp", "udp" or "" (any protocol; with Ports: tcp and udp).
	Proto string
	// Ports are destination ports; empty means any.
	Ports []uint16
}

// StickyEntry is one persistence entry of a service.
type StickyEntry struct {
	// Client is the masked client address.
	Client netip.Prefix
	Server netip.AddrPort
	// Expires is the time left before the entry expires. AddSticky uses
	// it as the entry's timeout (0: the service's Timeout).
	Expires time.Duration
}

// Counter reasons, the inner keys of Manager.Counters.
const (
	ReasonAllow    = "allow"     // client outside Service.Allow
	ReasonMaxConns = "max_conns" // Service.MaxConns reached
	ReasonNoServer = "no_server" // empty slot table
	ReasonDenied   = "denied"    // outbound connection matching no OutRule
)

// OutboundCounters is the outer key of Manager.Counters for Outbound.
const OutboundCounters = "outbound"

// table returns the table name with the default applied.
func (s Spec) table() string {
	if s.Table == "" {
		return DefaultTable
	}
	return s.Table
}

// mask returns the sticky prefix length with the default applied.
func (st Sticky) mask(v6 bool) int {
	if st.Mask != 0 {
		return st.Mask
	}
	if v6 {
		return 128
	}
	return 32
}

func (st Sticky) maxEntries() uint32 {
	if st.MaxEntries == 0 {
		return DefaultStickyEntries
	}
	return st.MaxEntries
}
