package ctsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ti-mo/netfilter"
)

// markerRetry is how often a reader that owes an Overflow and sees no
// traffic tries again to hand it over.
const markerRetry = 50 * time.Millisecond

// Events streams the conntrack events (new, update, destroy) of flows
// whose mark&mask == mark&mask to out until ctx ends, then returns nil.
// Other errors (the socket failing) end it with an error.
//
// It never loses events silently. When the kernel could not queue events
// (ENOBUFS: the socket buffer, EventOptions.Buffer, was full), when an
// event did not decode, or when out stayed full for EventOptions.Stall,
// it owes the consumer an Event{Type: Overflow}: it drops events until
// out has room for that Overflow, then goes on. After an ENOBUFS it also
// discards what the socket still holds, since those events are older
// than the lost ones. So every event after an Overflow is newer than
// anything lost: a consumer that answers an Overflow with a full resync
// (Dump, write all, delete what the dump lacks) and then applies the
// following events in order converges on the kernel's table.
//
// The reader never blocks on out for longer than Stall, so a stuck
// consumer costs a resync, not an unbounded queue. Give out a buffer
// (thousands of events) so bursts do not stall.
//
// The socket is a plain ctnetlink listener rather than ti-mo/conntrack's
// Conn.Listen: that one ends its worker on ENOBUFS and blocks on a full
// channel, the opposite of the policy above.
func (t *Table) Events(ctx context.Context, mark, mask uint32, out chan<- Event) error {
	opts := t.EventOptions.withDefaults()
	c, err := dialConn(t.nsfd, opts.Buffer)
	if err != nil {
		return fmt.Errorf("conntrack events: %w", classifyProbe(err, true, nil))
	}
	defer c.close()
	for _, g := range netfilter.GroupsCT {
		if err := c.nl.JoinGroup(uint32(g)); err != nil {
			return fmt.Errorf("conntrack events: join group %v: %w", g, err)
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = c.nl.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	d := deliverer{out: out, stall: opts.Stall, stats: &t.stats, log: t.log}
	handle := func(m nlmsg) {
		typ, f, err := decodeEntry(m.typ, m.flags, m.data)
		if err != nil {
			t.stats.undecodable.Add(1)
			d.owe("undecodable event: " + err.Error())
			return
		}
		if !f.Matches(mark, mask) {
			t.stats.filtered.Add(1)
			return
		}
		d.send(ctx, Event{Type: typ, Flow: f})
	}
	var rest *time.Timer
	if opts.Coalesce > 0 {
		rest = time.NewTimer(opts.Coalesce)
		defer rest.Stop()
	}
	for {
		// A deadline only while an Overflow is owed, so it gets delivered
		// even if no further event comes. Checking ctx after setting it
		// keeps a concurrent cancel from being overwritten.
		var deadline time.Time
		if d.owed {
			deadline = time.Now().Add(markerRetry)
		}
		if err := c.nl.SetReadDeadline(deadline); err != nil {
			return fmt.Errorf("conntrack events: %w", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		overflow, err := c.read(handle)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case overflow:
			t.stats.overflows.Add(1)
			n := c.discard(opts.Buffer)
			t.stats.dropped.Add(uint64(n))
			d.owe("kernel dropped events: socket buffer full")
		case errors.Is(err, os.ErrDeadlineExceeded):
			d.tryMarker()
		case err != nil:
			return fmt.Errorf("conntrack events: receive: %w", err)
		case rest != nil && !d.owed:
			// let the next events gather (see EventOptions.Coalesce)
			rest.Reset(opts.Coalesce)
			select {
			case <-ctx.Done():
				return nil
			case <-rest.C:
			}
		}
	}
}
