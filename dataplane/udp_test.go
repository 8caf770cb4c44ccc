//go:build linux

package dataplane

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tandem-lb/tandem/internal/testutil"
)

func TestUDPSpreadAndSource(t *testing.T) {
	a, b := startUDPBackend(t, "a", false), startUDPBackend(t, "b", false)
	vc := udpClusterConfig(a, b)
	pool := testPool(t, vc)
	c := startUDPCluster(t, vc, pool, UDPOptions{}, nil)
	vip := c.ListenAddr()
	perServer := map[string]int{}
	for i := range 10 {
		conn := udpClient(t, netip.Addr{})
		first := mustAsk(t, conn, vip, fmt.Sprintf("q%d-0", i))
		perServer[first]++
		for j := 1; j < 3; j++ {
			if got := mustAsk(t, conn, vip, fmt.Sprintf("q%d-%d", i, j)); got != first {
				t.Fatalf("client %d moved from %s to %s within its flow", i, first, got)
			}
		}
	}
	if perServer["a"] != 5 || perServer["b"] != 5 {
		t.Errorf("flows per server = %v, want 5 and 5 (round robin)", perServer)
	}
	// The last answer reaches its client while sendmmsg runs, before
	// the loop counts it.
	testutil.WaitFor(t, "30 datagrams out", func() bool { return c.Stats().DatagramsOut == 30 })
	st := c.Stats()
	if st.Flows != 10 || st.FlowsTotal != 10 || st.DatagramsIn != 30 || st.DatagramsOut != 30 {
		t.Errorf("stats = %+v; want 10 flows, 30 datagrams each way", st)
	}
	if want := uint64(30 * len("q0-0")); st.BytesIn != want || st.BytesOut != want+30*2 {
		t.Errorf("bytes in/out = %d/%d, want %d/%d", st.BytesIn, st.BytesOut, want, want+60)
	}
	for _, s := range st.Servers {
		if s.Active != 5 || s.Total != 5 {
			t.Errorf("server %s: active %d total %d, want 5 and 5", s.Name, s.Active, s.Total)
		}
	}
	// Each flow has a socket of its own: the backends saw 5 sources each.
	if a.sources() != 5 || b.sources() != 5 {
		t.Errorf("backend sources = %d, %d; want 5, 5", a.sources(), b.sources())
	}
	for r, n := range st.Drops {
		if n != 0 {
			t.Errorf("drops[%s] = %d", r, n)
		}
	}
}

func TestUDPListenSocketOptions(t *testing.T) {
	a := startUDPBackend(t, "a", false)
	vc := udpClusterConfig(a)
	c := startUDPCluster(t, vc, testPool(t, vc), UDPOptions{}, nil)
	fd := c.loops[0].lfd
	for _, o := range []struct {
		level, opt int
		name       string
	}{
		{unix.SOL_IP, unix.IP_FREEBIND, "IP_FREEBIND"},
		{unix.SOL_IP, unix.IP_PKTINFO, "IP_PKTINFO"},
		{unix.SOL_SOCKET, unix.SO_REUSEADDR, "SO_REUSEADDR"},
	} {
		if v, err := unix.GetsockoptInt(fd, o.level, o.opt); err != nil || v != 1 {
			t.Errorf("%s = %d, %v; want 1", o.name, v, err)
		}
	}
}

func TestUDPIdleFlowsExpire(t *testing.T) {
	a := startUDPBackend(t, "a", false)
	vc := udpClusterConfig(a)
	pool := testPool(t, vc)
	c := startUDPCluster(t, vc, pool, UDPOptions{FlowIdle: 100 * time.Millisecond}, nil)
	conn := udpClient(t, netip.Addr{})
	mustAsk(t, conn, c.ListenAddr(), "one")
	if st := c.Stats(); st.Flows != 1 || pool.Server("a").Active() != 1 {
		t.Fatalf("flows %d, server active %d; want 1, 1", st.Flows, pool.Server("a").Active())
	}
	testutil.WaitFor(t, "the idle flow to end", func() bool { return c.Stats().Flows == 0 })
	if n := pool.Server("a").Active(); n != 0 {
		t.Errorf("server active = %d after expiry, want 0", n)
	}
	mustAsk(t, conn, c.ListenAddr(), "two")
	if st := c.Stats(); st.Flows != 1 || st.FlowsTotal != 2 {
		t.Errorf("flows %d total %d; want a new flow (1, 2)", st.Flows, st.FlowsTotal)
	}
}

func TestUDPStandbyDrops(t *testing.T) {
	a := startUDPBackend(t, "a", false)
	vc := udpClusterConfig(a)
	c := startUDPCluster(t, vc, testPool(t, vc), UDPOptions{}, nil)
	conn := udpClient(t, netip.Addr{})
	c.SetActive(false)
	expectSilence(t, conn, c.ListenAddr(), "while backup")
	if st := c.Stats(); st.Drops[DropStandby] != 1 || st.Flows != 0 || st.Serving {
		t.Errorf("standby drops %d flows %d serving %v; want 1, 0, false", st.Drops[DropStandby], st.Flows, st.Serving)
	}
	c.SetActive(true)
	mustAsk(t, conn, c.ListenAddr(), "as master")
}

func TestUDPAllow(t *testing.T) {
	a := startUDPBackend(t, "a", false)
	vc := udpClusterConfig(a)
	vc.Allow = []string{"127.0.0.2/32"}
	c := startUDPCluster(t, vc, testPool(t, vc), UDPOptions{}, nil)
	expectSilence(t, udpClient(t, netip.MustParseAddr("127.0.0.1")), c.ListenAddr(), "outsider")
	mustAsk(t, udpClient(t, netip.MustParseAddr("127.0.0.2")), c.ListenAddr(), "insider")
	if st := c.Stats(); st.Drops[DropAllow] != 1 || st.Flows != 1 {
		t.Errorf("allow drops %d flows %d; want 1, 1", st.Drops[DropAllow], st.Flows)
	}
}

func TestUDPMaxConns(t *testing.T) {
	a := startUDPBackend(t, "a", false)
	vc := udpClusterConfig(a)
	vc.MaxConns = 2
	c := startUDPCluster(t, vc, testPool(t, vc), UDPOptions{FlowIdle: 300 * time.Millisecond}, nil)
	if c.MaxFlows() != 2 {
		t.Fatalf("MaxFlows = %d, want max_conns 2", c.MaxFlows())
	}
	c1, c2, c3 := udpClient(t, netip.Addr{}), udpClient(t, netip.Addr{}), udpClient(t, netip.Addr{})
	mustAsk(t, c1, c.ListenAddr(), "1")
	mustAsk(t, c2, c.ListenAddr(), "2")
	expectSilence(t, c3, c.ListenAddr(), "3")
	mustAsk(t, c1, c.ListenAddr(), "1 again") // live flows still work
	if st := c.Stats(); st.Drops[DropMaxConns] != 1 || st.Flows != 2 {
		t.Fatalf("max_conns drops %d flows %d; want 1, 2", st.Drops[DropMaxConns], st.Flows)
	}
	testutil.WaitFor(t, "the flows to end", func() bool { return c.Stats().Flows == 0 })
	mustAsk(t, c3, c.ListenAddr(), "3 again")
}

func TestUDPLargeAndOversize(t *testing.T) {
	a := startUDPBackend(t, "a", false)
	vc := udpClusterConfig(a)
	c := startUDPCluster(t, vc, testPool(t, vc), UDPOptions{}, nil)
	conn := udpClient(t, netip.Addr{})
	conn.SetWriteBuffer(1 << 20)
	conn.SetReadBuffer(1 << 20)
	big := bytes.Repeat([]byte("0123456789"), 6500) // 65,000 bytes
	name, echo, from, ok := ask(t, conn, c.ListenAddr(), big, 2*time.Second)
	if !ok || name != "a" || !bytes.Equal(echo, big) || from != c.ListenAddr() {
		t.Fatalf("65,000-byte query: ok %v, server %q, %d bytes back from %s", ok, name, len(echo), from)
	}
	// The answer reaches the client while sendmmsg runs, before the loop
	// counts it.
	testutil.WaitFor(t, "bytes in/out 65000/65002", func() bool {
		st := c.Stats()
		return st.BytesIn == 65000 && st.BytesOut == 65002
	})

	// A relay that takes at most 1,000 bytes drops (and counts) larger
	// datagrams rather than cutting them.
	small := startUDPCluster(t, vc, testPool(t, vc), UDPOptions{}, func(c *UDPCluster) { c.maxDatagram = 1000 })
	expectSilence(t, conn, small.ListenAddr(), string(big[:1001]))
	if got := mustAsk(t, conn, small.ListenAddr(), string(big[:1000])); got != "a" {
		t.Errorf("1,000 bytes answered by %q", got)
	}
	if st := small.Stats(); st.Drops[DropOversize] != 1 || st.DatagramsIn != 1 {
		t.Errorf("oversize drops %d relayed %d; want 1, 1", st.Drops[DropOversize], st.DatagramsIn)
	}
}

func TestUDPServerDownFlowMoves(t *testing.T) {
	for _, down := range []struct {
		name       string
		do, undo   func(*Server)
		stays      bool
		liveAfter  int64
		totalAfter uint64
	}{
		{name: "unhealthy", do: func(s *Server) { s.SetHealthy(false) }},
		{name: "disabled", do: func(s *Server) { s.SetAdmin(Disabled) }},
		{name: "draining", do: func(s *Server) { s.SetAdmin(Draining) }, stays: true},
	} {
		t.Run(down.name, func(t *testing.T) {
			a, b := startUDPBackend(t, "a", false), startUDPBackend(t, "b", false)
			vc := udpClusterConfig(a, b)
			pool := testPool(t, vc)
			c := startUDPCluster(t, vc, pool, UDPOptions{}, nil)
			conn := udpClient(t, netip.Addr{})
			first := mustAsk(t, conn, c.ListenAddr(), "before")
			other := map[string]string{"a": "b", "b": "a"}[first]
			down.do(pool.Server(first))
			pool.Refresh()
			want := other
			if down.stays {
				want = first
			}
			if got := mustAsk(t, conn, c.ListenAddr(), "after"); got != want {
				t.Fatalf("after %s: answered by %s, want %s", down.name, got, want)
			}
			if got := mustAsk(t, conn, c.ListenAddr(), "again"); got != want {
				t.Fatalf("next: answered by %s, want %s", got, want)
			}
			if down.stays {
				return
			}
			if n := pool.Server(first).Active(); n != 0 {
				t.Errorf("old server still holds %d flows", n)
			}
			if n := pool.Server(other).Active(); n != 1 {
				t.Errorf("new server holds %d flows, want 1", n)
			}
			if st := c.Stats(); st.Flows != 1 || st.FlowsTotal != 2 {
				t.Errorf("flows %d total %d; want 1, 2", st.Flows, st.FlowsTotal)
			}
		})
	}
}

func TestUDPNoServer(t *testing.T) {
	a := startUDPBackend(t, "a", false)
	vc := udpClusterConfig(a)
	pool := testPool(t, vc)
	c := startUDPCluster(t, vc, pool, UDPOptions{}, nil)
	conn := udpClient(t, netip.Addr{})
	mustAsk(t, conn, c.ListenAddr(), "up")
	pool.Server("a").SetHealthy(false)
	pool.Refresh()
	expectSilence(t, conn, c.ListenAddr(), "down")
	expectSilence(t, udpClient(t, netip.Addr{}), c.ListenAddr(), "new client")
	if st := c.Stats(); st.Drops[DropNoServer] != 2 || st.Flows != 0 {
		t.Errorf("no_server drops %d flows %d; want 2, 0", st.Drops[DropNoServer], st.Flows)
	}
}

func TestUDPUpstreamError(t *testing.T) {
	dead := udpDeadAddr(t) // nothing listens: the kernel answers port unreachable
	vc := udpClusterConfig(&udpBackend{name: "dead", addr: dead})
	c := startUDPCluster(t, vc, testPool(t, vc), UDPOptions{}, nil)
	conn := udpClient(t, netip.Addr{})
	expectSilence(t, conn, c.ListenAddr(), "anyone?")
	testutil.WaitFor(t, "the ICMP error to be counted", func() bool { return c.Stats().Drops[DropUpstreamError] >= 1 })
}

func TestUDPStickyKeepsClientsServer(t *testing.T) {
	a, b := startUDPBackend(t, "a", false), startUDPBackend(t, "b", false)
	vc := udpClusterConfig(a, b)
	sticky := &mapSticky{}
	c := startUDPCluster(t, vc, testPool(t, vc), UDPOptions{Sticky: sticky}, nil)
	// Under round robin, six flows alone would alternate; sticky keeps
	// every flow of 127.0.0.1 on its first server.
	var first string
	for i := range 6 {
		got := mustAsk(t, udpClient(t, netip.Addr{}), c.ListenAddr(), fmt.Sprint("flow ", i))
		if i == 0 {
			first = got
		} else if got != first {
			t.Fatalf("flow %d went to %s, want %s (sticky)", i, got, first)
		}
	}
	if s, ok := sticky.Lookup(netip.MustParseAddr("127.0.0.1")); !ok || s != first {
		t.Errorf("sticky entry = %q, %v; want %q", s, ok, first)
	}
	// Another client is balanced: it gets the other server.
	if got := mustAsk(t, udpClient(t, netip.MustParseAddr("127.0.0.2")), c.ListenAddr(), "x"); got == first {
		t.Errorf("127.0.0.2 went to %s too; round robin should give it the other", got)
	}
}

func TestUDPPanicRecovered(t *testing.T) {
	a := startUDPBackend(t, "a", false)
	vc := udpClusterConfig(a)
	pool := testPool(t, vc)
	c := startUDPCluster(t, vc, pool, UDPOptions{}, func(c *UDPCluster) {
		c.testHook = func(p []byte) {
			if string(p) == "boom" {
				panic("test panic")
			}
		}
	})
	conn := udpClient(t, netip.Addr{})
	mustAsk(t, conn, c.ListenAddr(), "before")
	expectSilence(t, conn, c.ListenAddr(), "boom")
	mustAsk(t, conn, c.ListenAddr(), "after")
	if st := c.Stats(); st.Panics != 1 || st.Flows != 1 || pool.Server("a").Active() != 1 {
		t.Errorf("panics %d flows %d active %d; want 1, 1, 1", st.Panics, st.Flows, pool.Server("a").Active())
	}
}

func TestUDPSeveralLoops(t *testing.T) {
	a, b := startUDPBackend(t, "a", false), startUDPBackend(t, "b", false)
	vc := udpClusterConfig(a, b)
	c := startUDPCluster(t, vc, testPool(t, vc), UDPOptions{Loops: 2}, nil)
	for i := range 40 {
		mustAsk(t, udpClient(t, netip.Addr{}), c.ListenAddr(), fmt.Sprint("q", i))
	}
	used := 0
	for _, l := range c.loops {
		if l.counters.flowsTotal.Load() > 0 {
			used++
		}
	}
	if st := c.Stats(); st.Flows != 40 || used != 2 {
		t.Errorf("flows %d over %d loops; want 40 over 2", st.Flows, used)
	}
}

func TestUDPDrainAfterStandby(t *testing.T) {
	a := startUDPBackend(t, "a", false)
	vc := udpClusterConfig(a)
	c := startUDPCluster(t, vc, testPool(t, vc), UDPOptions{}, nil)
	mustAsk(t, udpClient(t, netip.Addr{}), c.ListenAddr(), "q")
	c.SetActive(false)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.Drain(ctx)
	if st := c.Stats(); st.Flows != 0 {
		t.Fatalf("Drain returned with %d flows", st.Flows)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("drain took %v; standby flows should end after ~1s idle", d)
	}
}

func TestUDPPanicMidBatchFinishesBatch(t *testing.T) {
	a := startUDPBackend(t, "a", false)
	vc := udpClusterConfig(a)
	c := startUDPCluster(t, vc, testPool(t, vc), UDPOptions{}, func(c *UDPCluster) {
		c.testHook = func(p []byte) {
			switch string(p) {
			case "stall":
				time.Sleep(200 * time.Millisecond)
			case "boom":
				panic("test panic")
			}
		}
	})
	stall, boom, after := udpClient(t, netip.Addr{}), udpClient(t, netip.Addr{}), udpClient(t, netip.Addr{})
	// While the loop stalls on the first datagram the other two queue, so
	// one recvmmsg returns them together; the one after the panic must
	// still be relayed, without waiting for another datagram.
	for _, p := range []struct {
		conn *net.UDPConn
		msg  string
	}{{stall, "stall"}, {boom, "boom"}, {after, "after"}} {
		if _, err := p.conn.WriteToUDPAddrPort([]byte(p.msg), c.ListenAddr()); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 100)
	after.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, _, err := after.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "a|after" {
		t.Fatalf("datagram after the panic: %q, %v", buf[:n], err)
	}
	if st := c.Stats(); st.Panics != 1 {
		t.Errorf("panics = %d, want 1", st.Panics)
	}
}

func TestUDPIPv6VIP(t *testing.T) {
	a := startUDPBackend(t, "a", false)
	vc := udpClusterConfig(a)
	vc.VIP = "::1"
	c, err := NewUDPCluster(vc, testPool(t, vc), UDPOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	c.SetActive(true)
	if v, err := unix.GetsockoptInt(c.loops[0].lfd, unix.SOL_IPV6, unix.IPV6_RECVPKTINFO); err != nil || v != 1 {
		t.Errorf("IPV6_RECVPKTINFO = %d, %v", v, err)
	}
	conn := udpClient(t, netip.MustParseAddr("::1"))
	if got := mustAsk(t, conn, c.ListenAddr(), "over IPv6"); got != "a" {
		t.Errorf("answered by %q", got)
	}
}

func TestUDPConcurrentStatsAndHealth(t *testing.T) {
	a, b := startUDPBackend(t, "a", false), startUDPBackend(t, "b", false)
	vc := udpClusterConfig(a, b)
	pool := testPool(t, vc)
	c := startUDPCluster(t, vc, pool, UDPOptions{FlowIdle: 50 * time.Millisecond}, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // flap a server and read the stats meanwhile
		for i := 0; ; i++ {
			select {
			case <-stop:
				pool.Server("a").SetHealthy(true)
				pool.Refresh()
				return
			case <-time.After(2 * time.Millisecond):
			}
			pool.Server("a").SetHealthy(i%2 == 0)
			pool.Refresh()
			c.Stats()
		}
	})
	for i := range 8 {
		wg.Go(func() {
			conn := udpClient(t, netip.Addr{})
			for j := range 100 {
				mustAsk(t, conn, c.ListenAddr(), fmt.Sprint(i, "-", j))
			}
		})
	}
	time.Sleep(10 * time.Millisecond)
	for range 100 {
		if c.Stats().Flows > 8 {
			t.Fatal("more flows than clients")
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	testutil.WaitFor(t, "flows to expire", func() bool { return c.Stats().Flows == 0 })
	for _, s := range pool.Servers() {
		if s.Active() != 0 {
			t.Errorf("server %s holds %d flows after expiry", s.Name, s.Active())
		}
	}
}
