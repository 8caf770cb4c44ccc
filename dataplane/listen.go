package dataplane

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// clientKeepAlive probes idle client connections, so a client that
// vanished (a pulled cable, a NAT that forgot it) is found in about
// Idle + Count × Interval even with a long idle timeout.
var clientKeepAlive = net.KeepAliveConfig{
	Enable:   true,
	Idle:     60 * time.Second,
	Interval: 15 * time.Second,
	Count:    4,
}

// listenTCP binds addr before the address exists on the box: IP_FREEBIND
// (IPV6_FREEBIND) lets the backup bind the VIP it does not hold yet, so a
// failover never waits for a listener. SO_REUSEADDR lets a restarted node
// bind at once despite connections in TIME_WAIT. The backlog is Go's,
// which is the kernel's net.core.somaxconn (the most listen(2) accepts).
// Accepted connections have SO_KEEPALIVE and TCP_NODELAY (Go's default).
func listenTCP(ctx context.Context, addr netip.AddrPort) (*net.TCPListener, error) {
	network := "tcp4"
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		network = "tcp6"
	}
	lc := net.ListenConfig{
		Control:         listenControl,
		KeepAliveConfig: clientKeepAlive,
	}
	ln, err := lc.Listen(ctx, network, addr.String())
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln.(*net.TCPListener), nil
}
