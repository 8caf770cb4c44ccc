package dataplane

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tandem-lb/tandem/internal/testutil"
)

// TestClusterOverEpollEngine runs the accept path over the event-loop
// engine: spread, half-close, byte counts and the counters settled by a
// done that comes from another goroutine.
func TestClusterOverEpollEngine(t *testing.T) {
	eng := newTestEpoll(t)
	a, b := startBackend(t, "a", echoNamed("a")), startBackend(t, "b", echoNamed("b"))
	vc := testClusterConfig([]netip.AddrPort{a.addr, b.addr})
	vc.Servers[1].SendProxy = true // b reads the header as data and echoes it
	c := startClusterWith(t, vc, testPool(t, vc), eng, Options{}, nil)

	seen := map[string]int{}
	for range 4 {
		conn := dial(t, c, netip.Addr{})
		r := bufio.NewReader(conn)
		name := readLine(t, r)
		seen[name]++
		io.WriteString(conn, "ping\n")
		conn.CloseWrite()
		rest, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		want := "ping\nbye\n"
		if name == "b" {
			hdr := appendProxyHeader(nil, conn.LocalAddr().(*net.TCPAddr).AddrPort(), c.ListenAddr())
			want = string(hdr) + want
		}
		if string(rest) != want {
			t.Fatalf("%s: read %q, want %q", name, rest, want)
		}
	}
	if seen["a"] != 2 || seen["b"] != 2 {
		t.Fatalf("spread %v", seen)
	}
	testutil.WaitFor(t, "connections to finish", func() bool { return c.Stats().Active == 0 })
	st := c.Stats()
	hdrLen := uint64(ppv2FixedLen + ppv2TCP4Len)
	if st.Total != 4 || st.BytesIn != 4*5 || st.BytesOut != 4*(2+5+4)+2*hdrLen {
		t.Errorf("total=%d in=%d out=%d", st.Total, st.BytesIn, st.BytesOut)
	}
}

// newTestEpoll starts an EpollEngine with one loop and a fine idle sweep
// (the idle and connect timeouts of the tests are short) until the test
// ends.
func newTestEpoll(t testing.TB) *EpollEngine {
	eng, err := NewEpollEngine(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	eng.sweepEvery = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { eng.Run(ctx); close(ran) }()
	t.Cleanup(func() { cancel(); <-ran })
	return eng
}

// TestClusterTestsOverEpoll runs the cluster's tests (written for the
// GoEngine) over the EpollEngine, on the fast accept path (accept4 and
// ConnectProxy) and on the Go path (Proxy).
func TestClusterTestsOverEpoll(t *testing.T) {
	tests := []struct {
		name string
		f    func(*testing.T)
	}{
		{"Spread", TestClusterSpreadsOverBackends},
		{"ClientHalfClose", TestClusterClientHalfClose},
		{"ServerHalfClose", TestClusterServerHalfClose},
		{"IdleTimeout", TestClusterIdleTimeout},
		{"DeadServerRetried", TestClusterDeadServerRetried},
		{"AllServersDead", TestClusterAllServersDead},
		{"NoServer", TestClusterNoServerRefusedAtOnce},
		{"Standby", TestClusterStandbyRefuses},
		{"AllowList", TestClusterAllowList},
		{"MaxConns", TestClusterMaxConns},
		{"ServerMaxConns", TestServerMaxConns},
		{"ProxyProtocolV2", TestClusterProxyProtocolV2},
		{"PanicRecovered", TestClusterPanicRecovered},
		{"Sticky", TestClusterSticky},
		{"ServeAndDrain", TestClusterServeAndDrain},
		{"ConnectTimeout", TestClusterConnectTimeout},
		{"ManyShort", TestClusterManyShort},
	}
	for _, mode := range []string{"fast", "proxy"} {
		t.Run(mode, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					clusterEngine = func(t testing.TB) Engine { return newTestEpoll(t) }
					clusterSlowPath = mode == "proxy"
					defer func() { clusterEngine, clusterSlowPath = nil, false }()
					tt.f(t)
				})
			}
		})
	}
}

// blackholeAddr is a 127.0.0.1 port whose listener never accepts and
// whose backlog is full, so further SYNs are dropped: a connect to it
// hangs until its timeout.
func blackholeAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
	// Fill the backlog: connects that complete, then one that does not.
	for i := range 8 {
		d := net.Dialer{Timeout: 100 * time.Millisecond}
		c, err := d.Dial("tcp", a.String())
		if err != nil {
			if i == 0 {
				t.Fatalf("first connect to the backlog: %v", err)
			}
			return a
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("cannot fill a listen backlog here")
	return a
}

// TestClusterConnectTimeout: a server that never answers the SYN costs
// the connect timeout, then the retry goes elsewhere; with no other
// server the client is reset after the timeout.
func TestClusterConnectTimeout(t *testing.T) {
	hole := blackholeAddr(t)
	live := startBackend(t, "live", echoNamed("live"))
	vc := testClusterConfig([]netip.AddrPort{hole, live.addr})
	pool := testPool(t, vc)
	timeout := 200 * time.Millisecond
	c := startCluster(t, vc, pool, Options{ConnectTimeout: timeout}, nil)

	start := time.Now()
	conn := dial(t, c, netip.Addr{}) // round robin: the hole first
	if name := readLine(t, bufio.NewReader(conn)); name != "live" {
		t.Fatalf("served by %q", name)
	}
	if d := time.Since(start); d < timeout/2 || d > timeout+time.Second {
		t.Errorf("retry after %v, connect timeout %v", d, timeout)
	}
	conn.Close()
	if f := pool.Server("s0").Failures(); f != 1 {
		t.Errorf("black hole: %d failures, want 1", f)
	}

	pool.Server("s1").SetAdmin(Disabled)
	pool.Refresh()
	start = time.Now()
	conn = dial(t, c, netip.Addr{})
	if b, err := io.ReadAll(conn); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read %q, %v; want a reset", b, err)
	}
	if d := time.Since(start); d < timeout/2 || d > timeout+time.Second {
		t.Errorf("reset after %v, connect timeout %v", d, timeout)
	}
	testutil.WaitFor(t, "connect_failed", func() bool { return c.Stats().Refused[RefusedConnectFailed] == 1 })
	testutil.WaitFor(t, "connections to finish", func() bool { return c.Stats().Active == 0 })
}

// TestClusterManyShort: many short connections at once, some sending
// before the server answers, all served and settled.
func TestClusterManyShort(t *testing.T) {
	a, b := startBackend(t, "a", echoNamed("a")), startBackend(t, "b", echoNamed("b"))
	vc := testClusterConfig([]netip.AddrPort{a.addr, b.addr})
	c := startCluster(t, vc, testPool(t, vc), Options{}, nil)
	const n = 200
	errs := make(chan error, n)
	for i := range n {
		go func() {
			conn, err := net.DialTimeout("tcp", c.ListenAddr().String(), 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			msg := fmt.Sprintf("hello %d\n", i)
			io.WriteString(conn, msg)
			conn.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(conn)
			if err == nil && !strings.HasSuffix(string(got), "\n"+msg+"bye\n") {
				err = fmt.Errorf("read %q", got)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	testutil.WaitFor(t, "connections to finish", func() bool { return c.Stats().Active == 0 })
	if st := c.Stats(); st.Total != n {
		t.Errorf("total %d, want %d", st.Total, n)
	}
}

// TestFastAcceptInheritsNoDelay: sockets accepted on the fast path get
// TCP_NODELAY from the listener, and no keep-alive.
func TestFastAcceptInheritsNoDelay(t *testing.T) {
	ln, err := listenTCP(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc, _ := ln.SyscallConn()
	var cfd int
	var aerr error
	testutil.WaitWithin(t, time.Second, "the connection to be accepted", func() bool {
		rc.Control(func(fd uintptr) { cfd, _, aerr = rawAccept4(int(fd)) })
		return aerr != unix.EAGAIN
	})
	if aerr != nil {
		t.Fatal(aerr)
	}
	defer unix.Close(cfd)
	if v, _ := unix.GetsockoptInt(cfd, unix.IPPROTO_TCP, unix.TCP_NODELAY); v == 0 {
		t.Error("accepted socket lacks TCP_NODELAY")
	}
	if v, _ := unix.GetsockoptInt(cfd, unix.SOL_SOCKET, unix.SO_KEEPALIVE); v != 0 {
		t.Error("accepted socket has SO_KEEPALIVE")
	}
}
