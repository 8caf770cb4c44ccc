package healthcheck

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// mustNew builds a checker or fails the test.
func mustNew(t *testing.T, hc config.HealthCheck) Checker {
	t.Helper()
	c, err := New(hc)
	if err != nil {
		t.Fatalf("New(%+v): %v", hc, err)
	}
	return c
}

// check runs one probe with a timeout.
func check(t *testing.T, c Checker, addr netip.AddrPort, timeout time.Duration) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res := c.Check(ctx, addr)
	if res.At.IsZero() || res.Latency <= 0 || res.Detail == "" {
		t.Errorf("incomplete result %+v", res)
	}
	return res
}

// wantResult checks a result's verdict and that its Detail says why.
func wantResult(t *testing.T, res Result, ok bool, detail string) {
	t.Helper()
	if res.OK != ok || !strings.Contains(res.Detail, detail) {
		t.Errorf("got OK=%v %q, want OK=%v and a detail containing %q", res.OK, res.Detail, ok, detail)
	}
}

// addrOf turns a listener's address into an AddrPort.
func addrOf(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// closedPort returns a loopback TCP port nothing listens on (it did a
// moment ago).
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := addrOf(t, ln.Addr())
	ln.Close()
	return ap
}

// listenTCP listens on a free loopback port, closed when the test ends.
func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// serveTCP accepts connections on ln and hands each to handle in its own
// goroutine until the test ends; the cleanup waits for them all.
func serveTCP(t *testing.T, ln net.Listener, handle func(net.Conn)) {
	t.Helper()
	done := make(chan struct{})
	conns := make(chan struct{}, 64)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- struct{}{}
			go func() {
				defer func() { <-conns }()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
}
