//go:build !linux

package dataplane

import "net"

// readiness off Linux does not wait: readable reports "unknown" (-1), so
// every transfer is a blocking read into a pooled buffer.
type readiness struct{}

func (r *readiness) init(c *net.TCPConn) {}

func (r *readiness) readable() (int, error) { return -1, nil }
