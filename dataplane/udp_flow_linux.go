//go:build linux

package dataplane

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// openFlow starts client's flow: within the flow cap, on the sticky or
// balanced server, with a socket connected to it. On failure it counts
// the drop and returns nil.
func (l *uloop) openFlow(client netip.AddrPort) *uflow {
	c, k := l.c, &l.counters
	if n := c.flows.add(); n > c.maxFlows {
		c.flows.done()
		c.drop(k, udpMaxConns, client, nil)
		return nil
	}
	s := c.pick(client.Addr(), nil)
	if s == nil {
		c.flows.done()
		c.drop(k, udpNoServer, client, nil)
		return nil
	}
	f := &uflow{client: client, fd: -1, slot: -1}
	if err := l.connect(f, s); err != nil {
		c.flows.done()
		c.drop(k, udpUpstreamError, client, err)
		return nil
	}
	f.idx = int32(len(l.list))
	l.list = append(l.list, f)
	l.flows[client] = f
	return f
}

// moveFlow puts f on another server because its own went down: the old
// socket is closed and the server released. If no other server is
// available the flow ends; moveFlow reports whether f lives on.
func (l *uloop) moveFlow(f *uflow) bool {
	c, k := l.c, &l.counters
	s := c.pick(f.client.Addr(), f.srv)
	if s == nil {
		l.closeFlow(f)
		c.drop(k, udpNoServer, f.client, nil)
		return false
	}
	from := f.srv
	l.unregister(f)
	if err := l.connect(f, s); err != nil {
		l.closeFlow(f)
		c.drop(k, udpUpstreamError, f.client, err)
		return false
	}
	if f.rt != nil { // what the server that went down left unanswered
		l.resendPending(f, from)
		if len(l.rings) > 0 {
			l.submitRings()
		}
	}
	return true
}

// connect gives f a socket connected to s, registered with the loop
// (held by a descriptor, or parked once the cluster's descriptor share is
// used up), and acquires s for it.
func (l *uloop) connect(f *uflow, s *Server) error {
	fd, err := l.dial(s)
	if err != nil {
		return fmt.Errorf("server %s: %w", s.Name, err)
	}
	if l.shouldPark() {
		err = l.park(f, fd)
	} else {
		err = l.hold(f, fd)
	}
	if err != nil {
		return fmt.Errorf("server %s: %w", s.Name, err)
	}
	f.srv = s
	s.Acquire()
	l.counters.flowsTotal.Add(1)
	if st := l.c.opts.Sticky; st != nil {
		st.Store(f.client.Addr(), s.Name)
	}
	return nil
}

// hold keeps fd, connected for f, as f's descriptor, watched by epoll
// under it. On error fd is closed.
func (l *uloop) hold(f *uflow, fd int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	if fd >= len(l.table) {
		t := make([]*uflow, max(2*len(l.table), fd+1, 1024))
		copy(t, l.table)
		l.table = t
	}
	l.table[fd] = f
	f.fd = int32(fd)
	l.c.fdFlows.Add(1)
	return nil
}

// unregister closes f's socket and releases its server.
func (l *uloop) unregister(f *uflow) {
	if f.slot >= 0 {
		l.unpark(f)
	}
	if f.fd >= 0 {
		l.table[f.fd] = nil
		unix.Close(int(f.fd)) // leaves the epoll set with its last descriptor
		f.fd = -1
		l.c.fdFlows.Add(-1)
	}
	if f.srv != nil {
		f.srv.Release()
		f.srv = nil
	}
}

// closeFlow ends f.
func (l *uloop) closeFlow(f *uflow) {
	if f.rt != nil {
		l.endTiming(f)
	}
	l.unregister(f)
	last := l.list[len(l.list)-1]
	last.idx = f.idx
	l.list[f.idx] = last
	l.list[len(l.list)-1] = nil
	l.list = l.list[:len(l.list)-1]
	delete(l.flows, f.client)
	l.c.flows.done()
}

// udpSweepMax is the most flows one sweep ends, and udpSweepPause the
// wait before the next when there were more (51,000 flows a second).
// Ending a flow frees its socket, and the kernel frees sockets in RCU
// batches: 100,000 flows going idle together, ended in one sweep, stalled
// the loop's core for 330–465 ms; paced like this the worst answer took
// 8 ms.
const (
	udpSweepMax   = 256
	udpSweepPause = 5 * time.Millisecond
)

// sweep ends the flows idle for longer than FlowIdle (a second while the
// cluster is not serving), at most udpSweepMax of them; it reports
// whether it found them all.
func (l *uloop) sweep() bool {
	idle := l.c.opts.FlowIdle
	if !l.c.serving.Load() {
		idle = min(idle, udpStandbyIdle)
	}
	ended := 0
	for i := 0; i < len(l.list); {
		f := l.list[i]
		if f.rt != nil && f.rt.oldFd >= 0 && l.now-f.rt.movedAt > int64(udpLateKeep) {
			l.dropOld(f)
		}
		if l.now-f.last > int64(idle) {
			if ended == udpSweepMax {
				return false
			}
			l.closeFlow(f) // moves the last flow to i
			ended++
			continue
		}
		i++
	}
	return true
}

// dial opens a socket connected to s: from the next of the cluster's
// source addresses when it has them (trying the others when that one has
// no local port left), else from the address and port the kernel picks.
func (l *uloop) dial(s *Server) (int, error) {
	srcs := l.c.sources
	if len(srcs) == 0 {
		return udpDial(l.sockaddr(s), netip.Addr{})
	}
	var err error
	for range srcs {
		src := srcs[l.src%len(srcs)]
		l.src++
		var fd int
		if fd, err = udpDial(l.sockaddr(s), src); err == nil {
			return fd, nil
		}
	}
	return -1, err
}

// sockaddr is s's address as connect(2) wants it, made once per server.
func (l *uloop) sockaddr(s *Server) unix.Sockaddr {
	if sa, ok := l.saddrs[s]; ok {
		return sa
	}
	sa := udpSockaddr(s.Addr)
	l.saddrs[s] = sa
	return sa
}
