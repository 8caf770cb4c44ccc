package dataplane

import (
	"net"
	"time"
)

// Traffic is what one proxied connection carried.
type Traffic struct {
	// In is client → server bytes; Out is server → client bytes.
	In, Out uint64
	// ServerReset: the server reset the connection before it sent a
	// byte (passive health counts it).
	ServerReset bool
}

// Engine moves bytes between an accepted client connection and a
// connected server connection: both directions, half-close passed
// through (EOF from one side becomes a write shutdown on the other), until
// both directions have ended or nothing moved for idle. It then closes both
// connections and calls done exactly once. Proxy may return before the
// transfer ends (an event-loop engine) or when it ends (a goroutine
// engine); callers must not touch the connections after calling it.
type Engine interface {
	Proxy(client, server *net.TCPConn, idle time.Duration, done func(Traffic))
}
