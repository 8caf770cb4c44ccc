package healthcheck

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// tcpChecker passes when a TCP connection opens within the timeout. It
// closes the connection at once without sending anything.
type tcpChecker struct{}

// Check implements Checker.
func (tcpChecker) Check(ctx context.Context, addr netip.AddrPort) Result {
	start := time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return failErr(ctx, start, err)
	}
	_ = conn.Close()
	return pass(start, "TCP connect in %s", ms(time.Since(start)))
}
