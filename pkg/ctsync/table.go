package ctsync

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// CountKey groups live flows for status: the cluster's mark and the
// server the flows were forwarded to.
type CountKey struct {
	Mark   uint32
	Server netip.AddrPort
}

// Stats counts what a Table did, for metrics and status.
type Stats struct {
	Events      uint64 // events delivered to Events' consumers
	Filtered    uint64 // events of flows with other marks, skipped
	Dropped     uint64 // events dropped because a consumer did not keep up
	Overflows   uint64 // ENOBUFS: the kernel dropped events, socket buffer full
	Undecodable uint64 // event messages that did not decode (treated as lost)
	Signals     uint64 // Overflow events delivered (each asks for a resync)
	Created     uint64 // entries Write created
	Updated     uint64 // entries Write updated in place
	Replaced    uint64 // entries Write deleted and re-created: their NAT binding differed
	Deleted     uint64 // entries Delete and DeleteWhere removed
	WriteErrors uint64 // Write calls that failed
}

type counters struct {
	events, filtered, dropped, overflows, undecodable, signals atomic.Uint64
	created, updated, replaced, deleted, writeErrors           atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Events: c.events.Load(), Filtered: c.filtered.Load(), Dropped: c.dropped.Load(),
		Overflows: c.overflows.Load(), Undecodable: c.undecodable.Load(), Signals: c.signals.Load(),
		Created: c.created.Load(), Updated: c.updated.Load(), Replaced: c.replaced.Load(),
		Deleted: c.deleted.Load(), WriteErrors: c.writeErrors.Load(),
	}
}

// EventOptions tune Events; the zero value means the defaults.
type EventOptions struct {
	// Buffer is the event socket's receive buffer in bytes [32 MiB]: it
	// absorbs bursts while the reader or its consumer is busy. As root it
	// is set with SO_RCVBUFFORCE, past net.core.rmem_max. The kernel
	// accounts about 1 KiB a queued event: 32 MiB absorbs ~30,000.
	Buffer int
	// Stall is how long the reader waits for a full consumer channel
	// before it drops the event and owes an Overflow [250ms].
	Stall time.Duration
	// Coalesce is how long the reader rests after a read before it waits
	// for the next events [2ms; negative: never]. Events then arrive in
	// batches: one wake-up of the reader (and of its consumer, and of the
	// replication stream behind it) for each batch instead of each event,
	// which at a few thousand connections a second was most of the
	// node's CPU. It delays an event by at most this much.
	Coalesce time.Duration
}

// DefaultCoalesce is EventOptions.Coalesce's default.
const DefaultCoalesce = 2 * time.Millisecond

func (o EventOptions) withDefaults() EventOptions {
	if o.Coalesce == 0 {
		o.Coalesce = DefaultCoalesce
	}
	if o.Buffer <= 0 {
		o.Buffer = 32 << 20
	}
	if o.Stall <= 0 {
		o.Stall = 250 * time.Millisecond
	}
	return o
}
