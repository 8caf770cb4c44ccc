package healthcheck

import (
	"context"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"time"
)

// maxBanner is how much of a reply send_expect and udp look at.
const maxBanner = 4 << 10

// sendExpectChecker opens a TCP connection, sends a payload if there is
// one, and reads the first reply until the expected regexp matches, 4 KiB
// have arrived, the server closes or the timeout ends. It suits protocols
// that greet or answer in a line: SMTP "^220", POP3 "^\+OK", XMPP, LDAP.
// An empty regexp passes on any reply of at least one byte.
type sendExpectChecker struct {
	send   []byte
	expect *regexp.Regexp
}

// Check implements Checker.
func (c *sendExpectChecker) Check(ctx context.Context, addr netip.AddrPort) Result {
	start := time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return failErr(ctx, start, err)
	}
	defer conn.Close()
	defer withDeadline(ctx, conn)()

	if len(c.send) > 0 {
		if _, err := conn.Write(c.send); err != nil {
			return failErr(ctx, start, err)
		}
	}
	buf := make([]byte, 0, maxBanner)
	for len(buf) < maxBanner {
		n, err := conn.Read(buf[len(buf):maxBanner])
		buf = buf[:len(buf)+n]
		if n > 0 && c.expect.Match(buf) {
			return pass(start, "reply matched %s in %s", c.expect, ms(time.Since(start)))
		}
		if err != nil {
			if len(buf) == 0 {
				return fail(start, "no reply: %s", describe(ctx, start, err))
			}
			break
		}
	}
	return fail(start, "reply did not match %s: %s", c.expect, quote(buf))
}

// quote shows the start of a reply in a Detail.
func quote(b []byte) string {
	const max = 64
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "…"
	}
	return strconv.Quote(string(b))
}
