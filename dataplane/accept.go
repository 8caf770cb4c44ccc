package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// tcpConn is one accepted connection of a TCPCluster, from accept until
// the engine reports it finished.
type tcpConn struct {
	c      *TCPCluster
	client *net.TCPConn
	from   netip.AddrPort // the client
	to     netip.AddrPort // the VIP and port it connected to
	server *net.TCPConn
	srv    *Server // acquired: released by finish
	active bool    // counted in c.active: uncounted by finish
	done   atomic.Bool
}

// handle runs the accept path of one connection: standby, allow list,
// max_conns, pick (sticky first), connect with one retry elsewhere, PROXY
// header, then the engine. Every refusal is an immediate reset. A panic
// anywhere in it is recovered: the client is reset, the counters set
// right, and the process carries on.
func (c *TCPCluster) handle(client *net.TCPConn) {
	c.open.add()
	cn := &tcpConn{c: c, client: client}
	defer func() {
		if r := recover(); r != nil {
			c.panics.Add(1)
			c.log.Error("panic in connection handling", "client", cn.from, "panic", r,
				"stack", string(debug.Stack()))
			client.SetLinger(0)
			client.Close()
			if cn.server != nil {
				cn.server.SetLinger(0)
				cn.server.Close()
			}
			cn.finish(Traffic{})
		}
	}()
	if c.testHook != nil {
		c.testHook(client)
	}
	if a, ok := client.RemoteAddr().(*net.TCPAddr); ok {
		cn.from = a.AddrPort()
	}
	if a, ok := client.LocalAddr().(*net.TCPAddr); ok {
		cn.to = a.AddrPort()
	}
	from := cn.from.Addr().Unmap()
	s, counted, why := c.admit(from)
	cn.active = counted
	if s == nil {
		cn.refuse(why, nil)
		return
	}
	err := cn.connect(s)
	if err != nil {
		// One retry elsewhere, so a dead server costs the client nothing.
		if s = c.pool.Pick(from, s); s == nil || s.Full() {
			cn.refuse(reasonConnectFailed, err)
			return
		}
		if err = cn.connect(s); err != nil {
			cn.refuse(reasonConnectFailed, err)
			return
		}
	}
	if c.opts.Sticky != nil {
		c.opts.Sticky.Store(from, s.Name)
	}
	c.total.Add(1)
	idle := max(c.opts.IdleTimeout, 0)
	c.eng.Proxy(client, cn.server, idle, cn.finish)
}

// admit runs the checks a new connection passes on either accept path
// (handle, acceptFast): the cluster serves (this box is MASTER), the
// client is on the allow list, the cluster is under max_conns, and a
// server is available (pick). It returns the server, or nil and why the
// connection is refused. counted says the connection was counted in
// c.active, as it is once past the allow list; its finish uncounts it.
func (c *TCPCluster) admit(client netip.Addr) (s *Server, counted bool, refuse reason) {
	switch {
	case !c.serving.Load():
		return nil, false, reasonStandby
	case !c.allow.permits(client):
		return nil, false, reasonAllow
	}
	if n := c.active.Add(1); c.maxConns > 0 && n > c.maxConns {
		return nil, true, reasonMaxConns
	}
	s, full := c.pick(client)
	switch {
	case s == nil && full:
		return nil, true, reasonMaxConns
	case s == nil:
		return nil, true, reasonNoServer
	}
	return s, true, 0
}

// pick returns the client's sticky server while it is available and not
// full, else the balancer's choice, else (when that server is at its
// max_conns) the balancer's second choice; nil when no server is
// available, with full set when servers were there but at their limit.
func (c *TCPCluster) pick(client netip.Addr) (s *Server, full bool) {
	if c.opts.Sticky != nil {
		if name, ok := c.opts.Sticky.Lookup(client); ok {
			if s := c.pool.Server(name); s != nil && s.Available() && !s.Full() {
				return s, false
			}
		}
	}
	s = c.pool.Pick(client, nil)
	if s == nil || !s.Full() {
		return s, false
	}
	if s = c.pool.Pick(client, s); s == nil || s.Full() {
		return nil, true
	}
	return s, false
}

// connect dials s within the connect timeout and writes the PROXY header
// if s wants one. The server is acquired first, so balancers that count
// connections see the ones being made; a failure releases it and is
// counted on s.
func (cn *tcpConn) connect(s *Server) error {
	c := cn.c
	if !s.TryAcquire() {
		return errServerFull
	}
	cn.srv = s
	start := time.Now()
	var conn *net.TCPConn
	nc, err := c.dialer.DialContext(context.Background(), "tcp", c.dialAddr(s))
	if err == nil {
		conn = nc.(*net.TCPConn)
		s.ObserveConnect(time.Since(start))
		if s.SendProxy {
			var buf [maxProxyHeaderLen]byte
			if _, err = conn.Write(appendProxyHeader(buf[:0], cn.from, cn.to)); err != nil {
				conn.Close()
				err = fmt.Errorf("write PROXY header: %w", err)
			}
		}
	}
	if err != nil {
		s.ConnectFailed()
		s.trafficFailed(connectFailure(err))
		s.Release()
		cn.srv = nil
		if ok, n := c.dialLog.allow(time.Now()); ok {
			c.log.Warn("connect to server failed", "server", s.Name, "address", s.Addr,
				"client", cn.from, "err", err, "suppressed", n)
		}
		return err
	}
	cn.server = conn
	return nil
}

// errServerFull is a connect refused because the server is at max_conns.
var errServerFull = errors.New("server at max_conns")

// dialAddr is s's address as Dial wants it. (Dialer.DialTCP would take
// the netip form, but a zero local address makes it bind(2) to port 0
// before connecting, which draws from the small pool of ports that bind
// hands out and fails with EADDRINUSE under load.)
func (c *TCPCluster) dialAddr(s *Server) string {
	if a, ok := c.addrs[s]; ok {
		return a
	}
	return s.Addr.String()
}

// refuse counts (and maybe logs) why, then resets the client at once:
// counted first, so a client that saw its reset finds it in the status.
func (cn *tcpConn) refuse(r reason, err error) {
	cn.c.countRefusal(r, cn.from, err)
	cn.client.SetLinger(0)
	cn.client.Close()
	cn.finish(Traffic{})
}

// countRefusal counts (and maybe logs) a refused connection.
func (c *TCPCluster) countRefusal(r reason, from netip.AddrPort, err error) {
	c.refused[r].Add(1)
	if ok, n := c.refuseLog[r].allow(time.Now()); ok {
		args := []any{"reason", r.String(), "client", from, "suppressed", n}
		if err != nil {
			args = append(args, "err", err)
		}
		c.log.Warn("connection refused", args...)
	}
}

// finish is the engine's done callback (and the end of a refusal or a
// recovered panic): it releases the server and settles the counters,
// once however often it is called.
func (cn *tcpConn) finish(t Traffic) {
	if !cn.done.CompareAndSwap(false, true) {
		return
	}
	cn.c.settle(t, cn.srv, cn.active)
}

// settle ends a connection on either accept path: it counts its traffic,
// releases its server (srv, nil if none), frees its place under
// max_conns (active: it was counted there) and in the open set.
func (c *TCPCluster) settle(t Traffic, srv *Server, active bool) {
	c.bytesIn.Add(t.In)
	c.bytesOu.Add(t.Out)
	if srv != nil {
		srv.Release()
		if t.ServerReset {
			srv.trafficFailed(FailReset)
		} else if t.Out > 0 {
			srv.trafficOK()
		}
	}
	if active {
		c.active.Add(-1)
	}
	c.open.done()
}
