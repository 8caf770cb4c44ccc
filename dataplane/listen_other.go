//go:build !linux

package dataplane

import "syscall"

// listenControl does nothing off Linux: there is no IP_FREEBIND, so the
// VIP must be local (or the platform's non-local bind enabled) before
// Listen. Go sets SO_REUSEADDR on listeners itself.
func listenControl(network, address string, c syscall.RawConn) error { return nil }
