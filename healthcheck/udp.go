package healthcheck

import (
	"context"
	"net"
	"net/netip"
	"regexp"
	"time"
)

// udpChecker sends one datagram and expects a reply datagram matching a
// regexp. A lost request or reply fails the probe; Fall absorbs the odd
// loss. An ICMP port unreachable shows as "connection refused".
type udpChecker struct {
	send   []byte
	expect *regexp.Regexp
}

// Check implements Checker.
func (c *udpChecker) Check(ctx context.Context, addr netip.AddrPort) Result {
	start := time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", addr.String())
	if err != nil {
		return failErr(ctx, start, err)
	}
	defer conn.Close()
	defer withDeadline(ctx, conn)()

	if _, err := conn.Write(c.send); err != nil {
		return failErr(ctx, start, err)
	}
	buf := make([]byte, 64<<10)
	n, err := conn.Read(buf)
	if err != nil {
		return fail(start, "no reply: %s", describe(ctx, start, err))
	}
	reply := buf[:min(n, maxBanner)]
	if !c.expect.Match(reply) {
		return fail(start, "reply did not match %s: %s", c.expect, quote(reply))
	}
	return pass(start, "reply matched %s in %s", c.expect, ms(time.Since(start)))
}
