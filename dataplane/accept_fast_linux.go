//go:build linux

package dataplane

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The fast accept path of a TCPCluster over an EpollEngine: the accept
// goroutine takes connections off the listener with accept4(2) in
// batches (waiting for readiness in Go's poller, through the listener's
// RawConn), so the client descriptor never enters Go's poller nor gets a
// goroutine; the admission checks run right there, and the engine's loop
// connects to the server (ConnectProxy) and proxies. No dup, no
// poller registrations, no thread hand-overs per connection.

// fastCapable reports whether the cluster can take the fast path over eng.
func fastCapable(eng Engine) bool {
	_, ok := eng.(*EpollEngine)
	return ok
}

// fastConn is one connection of the fast path, from accept until the
// engine's Done. Past ConnectProxy its methods run on the event loop.
type fastConn struct {
	c       *TCPCluster
	fd      int            // the client's descriptor
	owned   bool           // fd is still ours (not yet the engine's)
	from    netip.AddrPort // the client
	to      netip.AddrPort // the VIP and port it connected to, once needed
	srv     *Server        // acquired: released on failure or by Done
	start   time.Time      // of the current connect
	retried bool
	active  bool // counted in c.active
	done    atomic.Bool
}

// serveFast is Serve's accept loop on the fast path; it returns false
// (having done nothing) when the listener cannot be used that way.
func (c *TCPCluster) serveFast(ctx context.Context, ln *net.TCPListener) (bool, error) {
	e, ok := c.eng.(*EpollEngine)
	if !ok {
		return false, nil
	}
	// A listener's RawConn cannot wait (its Read is EINVAL): wait on a
	// duplicate of its descriptor, as an os.File in Go's poller. Both are
	// closed when Serve returns, which closes the socket.
	lrc, err := ln.SyscallConn()
	if err != nil {
		return false, nil
	}
	dfd, derr := -1, error(nil)
	if err := lrc.Control(func(fd uintptr) {
		dfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || derr != nil {
		c.log.Warn("fast accept path unavailable", "err", errors.Join(err, derr))
		return false, nil
	}
	lf := os.NewFile(uintptr(dfd), "listener")
	defer lf.Close()
	stop := context.AfterFunc(ctx, func() { lf.Close() })
	defer stop()
	rc, err := lf.SyscallConn()
	if err != nil {
		lf.Close()
		return false, nil
	}
	retry := acceptBackoff()
	var errLog logLimiter
	for {
		var aerr error
		err := rc.Read(func(fd uintptr) bool {
			for {
				cfd, from, err := rawAccept4(int(fd))
				switch err {
				case nil:
					retry.Reset()
					c.acceptFast(e, cfd, from)
				case unix.EAGAIN:
					return false // wait in the poller for the next one
				case unix.EINTR, unix.ECONNABORTED:
				default:
					aerr = err
					return true
				}
			}
		})
		if ctx.Err() != nil || errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
			return true, nil
		}
		if err == nil {
			err = aerr
		}
		if !c.acceptFailed(ctx, &retry, &errLog, err) {
			return true, nil
		}
	}
}

// acceptFast runs the admission checks (admit) on a bare client
// descriptor and hands it to the engine, or resets it. A panic is
// recovered as in handle.
func (c *TCPCluster) acceptFast(e *EpollEngine, cfd int, from netip.AddrPort) {
	c.open.add()
	fc := &fastConn{c: c, fd: cfd, owned: true, from: from}
	defer func() {
		if r := recover(); r != nil {
			c.panics.Add(1)
			c.log.Error("panic in connection handling", "client", fc.from, "panic", r,
				"stack", string(debug.Stack()))
			if fc.owned {
				resetFD(fc.fd)
				fc.owned = false
				if fc.srv != nil {
					fc.srv.Release()
					fc.srv = nil
				}
				fc.Done(Traffic{})
			}
		}
	}()
	if c.testHook != nil {
		c.testHook(nil)
	}
	src := from.Addr().Unmap()
	s, counted, why := c.admit(src)
	fc.active = counted
	if s == nil {
		fc.refuse(why, nil)
		return
	}
	if !s.TryAcquire() {
		// As connect's errServerFull: one more pick, elsewhere.
		if s = c.pool.Pick(src, s); s == nil || s.Full() || !s.TryAcquire() {
			fc.refuse(reasonConnectFailed, errServerFull)
			return
		}
	}
	fc.srv = s
	fc.start = time.Now()
	hdr := fc.header(s)
	fc.owned = false
	e.ConnectProxy(cfd, s.Addr, hdr, max(c.opts.IdleTimeout, 0), c.opts.ConnectTimeout, fc)
}

// header is the PROXY header for s, or nil. The client's descriptor is
// open (ours, or the engine's while it connects).
func (fc *fastConn) header(s *Server) []byte {
	if !s.SendProxy {
		return nil
	}
	if !fc.to.IsValid() {
		if sa, err := unix.Getsockname(fc.fd); err == nil {
			switch sa := sa.(type) {
			case *unix.SockaddrInet4:
				fc.to = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
			case *unix.SockaddrInet6:
				fc.to = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
			}
		}
	}
	return appendProxyHeader(make([]byte, 0, maxProxyHeaderLen), fc.from, fc.to)
}

// resetFD closes a socket with a reset.
func resetFD(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}

// refuse counts (and maybe logs) why, then resets the client at once:
// counted first, so a client that saw its reset finds it in the status.
func (fc *fastConn) refuse(r reason, err error) {
	fc.c.countRefusal(r, fc.from, err)
	resetFD(fc.fd)
	fc.owned = false
	fc.Done(Traffic{})
}

// Connected is the engine's report of a connect that succeeded.
func (fc *fastConn) Connected() {
	c := fc.c
	fc.srv.ObserveConnect(time.Since(fc.start))
	if c.opts.Sticky != nil {
		c.opts.Sticky.Store(fc.from.Addr().Unmap(), fc.srv.Name)
	}
	c.total.Add(1)
}

// ConnectFailed counts the failure on the server and offers one retry
// elsewhere, as connect and handle do on the other path.
func (fc *fastConn) ConnectFailed(err error) (netip.AddrPort, []byte, bool) {
	c, s := fc.c, fc.srv
	s.ConnectFailed()
	s.trafficFailed(connectFailure(err))
	s.Release()
	fc.srv = nil
	if ok, n := c.dialLog.allow(time.Now()); ok {
		c.log.Warn("connect to server failed", "server", s.Name, "address", s.Addr,
			"client", fc.from, "err", err, "suppressed", n)
	}
	if !fc.retried {
		fc.retried = true
		if s = c.pool.Pick(fc.from.Addr().Unmap(), s); s != nil && !s.Full() {
			if s.TryAcquire() {
				fc.srv = s
				fc.start = time.Now()
				return s.Addr, fc.header(s), true
			}
			err = errServerFull
		}
	}
	c.countRefusal(reasonConnectFailed, fc.from, err)
	return netip.AddrPort{}, nil, false
}

// Done settles the counters, once.
func (fc *fastConn) Done(t Traffic) {
	if !fc.done.CompareAndSwap(false, true) {
		return
	}
	srv := fc.srv
	fc.srv = nil
	fc.c.settle(t, srv, fc.active)
}
