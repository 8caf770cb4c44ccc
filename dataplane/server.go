// Package dataplane serves the virtual clusters: it accepts client
// connections on each cluster's VIP and port and spreads them over the
// cluster's pool of health-checked servers.
package dataplane

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// Admin is an operator's say on a server, independent of its health.
type Admin int32

// The admin states of CONTRACT.md.
const (
	Enabled  Admin = iota // in rotation
	Draining              // no new connections; existing ones finish
	Disabled              // out of rotation now
)

func (a Admin) String() string {
	switch a {
	case Enabled:
		return "enabled"
	case Draining:
		return "draining"
	case Disabled:
		return "disabled"
	}
	return "unknown"
}

// Server is one member of a pool at run time. Its counters and flags are
// atomics, so the accept path reads them without locks.
type Server struct {
	Name   string
	Addr   netip.AddrPort
	Weight int
	// SendProxy prepends a PROXY protocol v2 header to each connection.
	SendProxy bool
	// MaxConns limits open connections (live flows); 0 is unlimited.
	MaxConns int64
	// Index is the server's position in its pool, stable for its life.
	Index int

	healthy  atomic.Bool
	admin    atomic.Int32
	active   atomic.Int64
	total    atomic.Uint64
	failures atomic.Uint64
	// connectNanos is an EWMA of connect time, for fastest_response.
	connectNanos atomic.Int64
	// passive is where traffic outcomes go (Pool.SetPassive); failRun
	// is set while a failure is the last outcome reported.
	passive atomic.Pointer[PassiveFunc]
	failRun atomic.Bool
	// agent is the agent's last load reading minus AgentNone (agent.go).
	agent atomic.Int32
}

// NewServer returns a server that is healthy and enabled.
func NewServer(index int, name string, addr netip.AddrPort, weight int) *Server {
	if weight < 1 {
		weight = 1
	}
	s := &Server{Index: index, Name: name, Addr: addr, Weight: weight}
	s.healthy.Store(true)
	return s
}

// Available reports whether new connections may go to the server.
func (s *Server) Available() bool {
	return s.healthy.Load() && Admin(s.admin.Load()) == Enabled && !s.AgentDrained()
}

// Healthy is the last health verdict.
func (s *Server) Healthy() bool { return s.healthy.Load() }

// SetHealthy records a health verdict; it reports whether it changed.
func (s *Server) SetHealthy(h bool) bool { return s.healthy.Swap(h) != h }

// Admin is the operator's state of the server.
func (s *Server) Admin() Admin { return Admin(s.admin.Load()) }

// SetAdmin sets the operator's state of the server.
func (s *Server) SetAdmin(a Admin) { s.admin.Store(int32(a)) }

// Active is the number of open connections (or live flows).
func (s *Server) Active() int64 { return s.active.Load() }

// Total is the number of connections ever sent to the server.
func (s *Server) Total() uint64 { return s.total.Load() }

// Failures counts connects that failed.
func (s *Server) Failures() uint64 { return s.failures.Load() }

// Acquire counts a new connection to the server; Release ends it.
func (s *Server) Acquire() { s.active.Add(1); s.total.Add(1) }

// TryAcquire counts a new connection unless the server is at MaxConns;
// it reports whether the connection may go to the server.
func (s *Server) TryAcquire() bool {
	if n := s.active.Add(1); s.MaxConns > 0 && n > s.MaxConns {
		s.active.Add(-1)
		return false
	}
	s.total.Add(1)
	return true
}

// Full reports whether the server is at its MaxConns.
func (s *Server) Full() bool { return s.MaxConns > 0 && s.active.Load() >= s.MaxConns }

// Release counts the end of a connection.
func (s *Server) Release() { s.active.Add(-1) }

// ConnectFailed counts a failed connect.
func (s *Server) ConnectFailed() { s.failures.Add(1) }

// ObserveConnect folds one connect time into the EWMA (weight 1/8).
func (s *Server) ObserveConnect(d time.Duration) {
	for {
		old := s.connectNanos.Load()
		next := int64(d)
		if old != 0 {
			next = old + (int64(d)-old)/8
		}
		if s.connectNanos.CompareAndSwap(old, next) {
			return
		}
	}
}

// ConnectTime is the EWMA of connect time (0 before the first connect).
func (s *Server) ConnectTime() time.Duration { return time.Duration(s.connectNanos.Load()) }

// Balancer picks a server for a new connection. Pick is given the
// servers that are available now (never empty) and the client's address;
// it must be safe for concurrent use. Implementations: one file each.
type Balancer interface {
	Pick(client netip.Addr, candidates []*Server) *Server
}
