package dataplane

import "net/netip"

// EpollStats is a snapshot of an EpollEngine's counters.
type EpollStats struct {
	// Conns is the number of proxied connections open now (including those
	// handed to Proxy and not yet registered by their loop).
	Conns int
	// Loops is the number of event loops.
	Loops int
	// Splices and Copies count the successful transfers to a destination
	// socket: splice(2) calls out of a pipe, and writes out of user-space
	// buffers.
	Splices, Copies uint64
	// SpliceBytes and CopyBytes are the bytes those transfers moved.
	SpliceBytes, CopyBytes uint64
	// Stalls counts the times a destination could not take everything
	// (the rest waited in a buffer or pipe for EPOLLOUT).
	Stalls uint64
	// Timeouts counts connections closed for being idle.
	Timeouts uint64
}

// ConnectHandler is the caller's side of EpollEngine.ConnectProxy. Its
// methods run on the event loop, one at a time, and must not block.
type ConnectHandler interface {
	// Connected reports that the connect succeeded (and the header, if
	// any, was written); proxying starts when it returns.
	Connected()
	// ConnectFailed reports a failed connect (refused, reset, timed out,
	// or the header could not be written). It returns another address to
	// try, with the header to send there, or ok false to reset the client.
	ConnectFailed(err error) (retry netip.AddrPort, header []byte, ok bool)
	// Done is called once when the connection is over, as Engine's done.
	Done(Traffic)
}
