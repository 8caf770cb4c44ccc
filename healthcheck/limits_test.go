package healthcheck

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// The tests below feed each check a reply larger than it reads, and show
// the probe ends with a verdict, promptly, having read no more than its
// limit: a broken or hostile server cannot grow the node's memory.

// TestHTTPHeaderLimit: a reply header over maxHTTPHeader (but under
// net/http's own 1 MiB) fails the probe, even with status 200.
func TestHTTPHeaderLimit(t *testing.T) {
	ln := listenTCP(t)
	serveTCP(t, ln, func(c net.Conn) {
		bufio.NewReader(c).ReadString('\n')
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Junk: "))
		c.Write(bytes.Repeat([]byte("a"), 4*maxHTTPHeader))
		c.Write([]byte("\r\n\r\n"))
	})
	c := mustNew(t, config.HealthCheck{Type: "http", Path: "/"})
	res := check(t, c, addrOf(t, ln.Addr()), 3*time.Second)
	wantResult(t, res, false, "")
	if !strings.Contains(res.Detail, "too large") && !strings.Contains(res.Detail, "header") {
		t.Errorf("detail %q does not say the header was too large", res.Detail)
	}
	if res.Latency > 2*time.Second {
		t.Errorf("took %v: the check read on instead of stopping at the limit", res.Latency)
	}
}

// TestSendExpectReadLimit: a server that never stops talking fails the
// check once maxBanner bytes arrived without a match, before the timeout.
func TestSendExpectReadLimit(t *testing.T) {
	ln := listenTCP(t)
	serveTCP(t, ln, func(c net.Conn) {
		junk := bytes.Repeat([]byte("z"), 1<<10)
		for {
			if _, err := c.Write(junk); err != nil {
				return
			}
		}
	})
	c := mustNew(t, config.HealthCheck{Type: "send_expect", ExpectBody: "^220"})
	res := check(t, c, addrOf(t, ln.Addr()), 3*time.Second)
	wantResult(t, res, false, "reply did not match ^220")
	if res.Latency > time.Second {
		t.Errorf("took %v: the check read on past %d bytes", res.Latency, maxBanner)
	}
}

// TestUDPReplyLimit: only the first maxBanner bytes of a reply datagram
// are matched.
func TestUDPReplyLimit(t *testing.T) {
	pc := serveUDP(t, func([]byte) []byte {
		return append(bytes.Repeat([]byte("x"), 60000), "tail"...)
	})
	ok := mustNew(t, config.HealthCheck{Type: "udp", Send: "ping", ExpectBody: "^x"})
	wantResult(t, check(t, ok, addrOf(t, pc.LocalAddr()), 2*time.Second), true, "reply matched")
	beyond := mustNew(t, config.HealthCheck{Type: "udp", Send: "ping", ExpectBody: "tail"})
	wantResult(t, check(t, beyond, addrOf(t, pc.LocalAddr()), 2*time.Second), false, "reply did not match tail")
}
