package dataplane

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenControl sets IP_FREEBIND or IPV6_FREEBIND, SO_REUSEADDR,
// SO_REUSEPORT and TCP_NODELAY on a
// listening socket before it is bound.
func listenControl(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		level, opt := unix.SOL_IP, unix.IP_FREEBIND
		if network == "tcp6" {
			level, opt = unix.SOL_IPV6, unix.IPV6_FREEBIND
		}
		if err := unix.SetsockoptInt(int(fd), level, opt, 1); err != nil {
			serr = fmt.Errorf("set freebind: %w", err)
			return
		}
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			serr = fmt.Errorf("set SO_REUSEADDR: %w", err)
			return
		}
		// SO_REUSEPORT: a reload binds a changed cluster's new listener
		// beside the old one, so the vip:port never stops accepting.
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			serr = fmt.Errorf("set SO_REUSEPORT: %w", err)
			return
		}
		// Inherited by accepted sockets: the fast accept path needs no
		// setsockopt per connection.
		if err := unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
			serr = fmt.Errorf("set TCP_NODELAY: %w", err)
		}
	})
	if err != nil {
		return err
	}
	return serr
}
