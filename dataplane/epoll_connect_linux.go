//go:build linux

package dataplane

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// ConnectProxy is ProxyFD for an accept path that has not connected to
// the server yet: the event loop opens a nonblocking socket to dst (with
// TCP_NODELAY), waits for the connect to end, writes header (a PROXY
// header; nil for none) and proxies. A connect that fails, or does not
// end within timeout (to the idle sweep's granularity), is reported to
// h.ConnectFailed, which may name another address to try; when it does
// not, the client is reset. The engine owns client from the call on, and
// calls h.Done exactly once, as Proxy calls done. The client's readiness
// is tracked while connecting; what it sent is forwarded once connected.
func (e *EpollEngine) ConnectProxy(client int, dst netip.AddrPort, header []byte, idle, timeout time.Duration, h ConnectHandler) {
	c := &econn{h: h, dst: dst, hdr: header, connecting: true}
	c.sk[0].fd, c.sk[1].fd = client, -1
	if idle > 0 {
		c.idle = uint32(min((idle+e.sweepEvery-1)/e.sweepEvery, 1<<31))
	}
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	c.ctimeout = uint32(min((timeout+e.sweepEvery-1)/e.sweepEvery, 1<<31))
	l := e.loops[int(e.next.Add(1))%len(e.loops)]
	l.submit(c)
}

// addConnecting registers the client of a ConnectProxy and starts the
// connect.
func (l *eloop) addConnecting(c *econn) {
	fd := c.sk[0].fd
	l.setTable(fd, c)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := rawEpollAdd(l.epfd, fd, &ev); err != nil {
		l.e.log.Warn("epoll_ctl add", "loop", l.id, "err", err)
		l.finish(c, true)
		return
	}
	l.startConnect(c)
}

func (l *eloop) setTable(fd int, c *econn) {
	if fd >= len(l.table) {
		t := make([]*econn, max(2*len(l.table), fd+1, 1024))
		copy(t, l.table)
		l.table = t
	}
	l.table[fd] = c
}

// startConnect opens the server socket and starts connecting it to c.dst.
func (l *eloop) startConnect(c *econn) {
	c.last = l.tick
	fd, err := rawSocket(c.dst.Addr())
	if err != nil {
		l.connectFailed(c, fmt.Errorf("socket: %w", err))
		return
	}
	rawSetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := rawConnect(fd, c.dst); err != nil && err != unix.EINPROGRESS && err != unix.EINTR {
		rawClose(fd)
		l.connectFailed(c, fmt.Errorf("dial tcp %s: %w", c.dst, err))
		return
	}
	c.sk[1] = esock{fd: fd}
	l.setTable(fd, c)
	// The tag tells this socket's events from stale ones of a socket
	// closed earlier in the same batch whose descriptor it reuses.
	if l.cgen++; l.cgen == 0 {
		l.cgen++
	}
	c.cgen = l.cgen
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd), Pad: c.cgen}
	if err := rawEpollAdd(l.epfd, fd, &ev); err != nil {
		l.connectFailed(c, fmt.Errorf("epoll_ctl add: %w", err))
	}
}

// connectEvent handles an event m on the server socket of a connecting c
// (dispatch has recorded its readiness in c.sk[1]).
func (l *eloop) connectEvent(c *econn, m uint32) {
	if m&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
		return
	}
	fd := c.sk[1].fd
	soerr, err := rawGetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	switch {
	case err != nil:
	case soerr != 0:
		err = unix.Errno(soerr)
	case m&unix.EPOLLOUT == 0:
		err = unix.ECONNRESET
	}
	if err != nil {
		l.connectFailed(c, fmt.Errorf("dial tcp %s: %w", c.dst, err))
		return
	}
	if len(c.hdr) > 0 {
		n, err := send(fd, c.hdr)
		if err == nil && n < len(c.hdr) {
			err = unix.EAGAIN
		}
		if err != nil {
			l.connectFailed(c, fmt.Errorf("write PROXY header: %w", err))
			return
		}
	}
	c.hdr = nil
	c.connecting = false
	c.last = l.tick
	c.h.Connected()
	l.pump(c)
}

// connectFailed closes the server socket of a connecting c and retries
// where the handler says, or resets the client.
func (l *eloop) connectFailed(c *econn, err error) {
	if fd := c.sk[1].fd; fd >= 0 {
		if fd < len(l.table) && l.table[fd] == c {
			l.table[fd] = nil
		}
		rawClose(fd)
		c.sk[1] = esock{fd: -1}
	}
	dst, hdr, ok := c.h.ConnectFailed(err)
	if !ok {
		l.finish(c, true)
		return
	}
	c.dst, c.hdr = dst, hdr
	l.startConnect(c)
}
