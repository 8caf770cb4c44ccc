package dataplane

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// listenTCP binds addr before the address exists on the box: IP_FREEBIND
// (IPV6_FREEBIND) lets the backup bind the VIP it does not hold yet, so a
// failover never waits for a listener. SO_REUSEADDR lets a restarted node
// bind at once despite connections in TIME_WAIT. The backlog is Go's,
// which is the kernel's net.core.somaxconn (the most listen(2) accepts).
// Accepted connections have TCP_NODELAY (set on the listener, whose
// accepted sockets inherit it, and by Go on its own accept path) and no
// keep-alive probes, as HAProxy's default: the idle timeout ends
// connections whose client vanished.
func listenTCP(ctx context.Context, addr netip.AddrPort) (*net.TCPListener, error) {
	network := "tcp4"
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		network = "tcp6"
	}
	lc := net.ListenConfig{
		Control:   listenControl,
		KeepAlive: -1,
	}
	ln, err := lc.Listen(ctx, network, addr.String())
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln.(*net.TCPListener), nil
}
