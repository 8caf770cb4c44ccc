package ctsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
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
// out has room for that Overflow, then goes on. The consumer answers an
// Overflow with a full resync (a Dump), which covers everything lost
// before it. The reader never blocks on out for longer than Stall, so a
// stuck consumer costs a resync, not an unbounded queue. Give out a
// buffer (thousands of events) so bursts do not stall.
//
// The socket is a plain ctnetlink listener rather than ti-mo/conntrack's
// Conn.Listen: that one ends its worker on ENOBUFS and blocks on a full
// channel, which is the opposite of the policy above. Messages are
// decoded with ti-mo/conntrack.
func (t *Table) Events(ctx context.Context, mark, mask uint32, out chan<- Event) error {
	opts := t.EventOptions.withDefaults()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: t.nsfd})
	if err != nil {
		return fmt.Errorf("conntrack events: %w", classifyProbe(err, true, nil))
	}
	defer c.Close()
	if err := setRcvBuf(c, opts.Buffer); err != nil {
		return fmt.Errorf("conntrack events: socket buffer: %w", err)
	}
	for _, g := range netfilter.GroupsCT {
		if err := c.JoinGroup(uint32(g)); err != nil {
			return fmt.Errorf("conntrack events: join group %v: %w", g, err)
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	d := deliverer{out: out, stall: opts.Stall, stats: &t.stats, log: t.log}
	for {
		// A deadline only while an Overflow is owed, so it gets delivered
		// even if no further event comes. Checking ctx after setting it
		// keeps a concurrent cancel from being overwritten.
		var deadline time.Time
		if d.owed {
			deadline = time.Now().Add(markerRetry)
		}
		if err := c.SetReadDeadline(deadline); err != nil {
			return fmt.Errorf("conntrack events: %w", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		msgs, err := c.Receive()
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case errors.Is(err, unix.ENOBUFS):
			t.stats.overflows.Add(1)
			d.owe("kernel dropped events: socket buffer full")
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			d.tryMarker()
			continue
		case err != nil:
			return fmt.Errorf("conntrack events: receive: %w", err)
		}
		for _, m := range msgs {
			typ, f, err := decodeMessage(m)
			if err != nil {
				t.stats.undecodable.Add(1)
				d.owe("undecodable event: " + err.Error())
				continue
			}
			if !f.Matches(mark, mask) {
				t.stats.filtered.Add(1)
				continue
			}
			d.send(ctx, Event{Type: typ, Flow: f})
		}
	}
}

// setRcvBuf sizes the socket's receive buffer, past net.core.rmem_max
// when the process may (CAP_NET_ADMIN).
func setRcvBuf(c *netlink.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
		if serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
		}
	}); err != nil {
		return err
	}
	return serr
}
