package healthcheck

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// tcpChecker passes when a TCP connection opens within the timeout. It
// closes the connection at once without sending anything. With TLS it
// also completes a handshake, which fails on a certificate that is
// expired, not yet valid, for another name or from an unknown CA, and
// warns of one about to expire.
type tcpChecker struct {
	tls *tlsOptions // nil: connect only
}

// Check implements Checker.
func (c tcpChecker) Check(ctx context.Context, addr netip.AddrPort) Result {
	start := time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return failErr(ctx, start, err)
	}
	defer conn.Close()
	if c.tls == nil {
		return pass(start, "TCP connect in %s", ms(time.Since(start)))
	}
	defer withDeadline(ctx, conn)()
	tc, err := c.tls.handshake(ctx, conn, addr)
	if err != nil {
		return fail(start, "%s", describeTLS(ctx, start, err))
	}
	res := pass(start, "TLS handshake in %s", ms(time.Since(start)))
	res = c.tls.certResult(res, tc.ConnectionState())
	_ = tc.Close() // a close_notify, bounded by the deadline
	return res
}
