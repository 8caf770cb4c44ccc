package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/internal/testutil"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func TestClusterSpreadsOverBackends(t *testing.T) {
	a, b := startBackend(t, "a", echoNamed("a")), startBackend(t, "b", echoNamed("b"))
	vc := testClusterConfig([]netip.AddrPort{a.addr, b.addr})
	pool := testPool(t, vc)
	c := startCluster(t, vc, pool, Options{}, nil)

	seen := map[string]int{}
	for range 10 {
		conn := dial(t, c, netip.Addr{})
		r := bufio.NewReader(conn)
		name := readLine(t, r)
		seen[name]++
		io.WriteString(conn, "ping\n")
		conn.CloseWrite()
		if rest, err := io.ReadAll(r); err != nil || string(rest) != "ping\nbye\n" {
			t.Fatalf("echo = %q, %v", rest, err)
		}
		conn.Close()
	}
	if seen["a"] != 5 || seen["b"] != 5 {
		t.Fatalf("round robin over two backends gave %v, want 5 each", seen)
	}
	testutil.WaitFor(t, "connections to finish", func() bool { return c.Stats().Active == 0 })
	st := c.Stats()
	if st.Total != 10 || st.BytesIn != 10*5 || st.BytesOut != 10*(2+5+4) {
		t.Errorf("stats total=%d in=%d out=%d, want 10, 50, 110", st.Total, st.BytesIn, st.BytesOut)
	}
	for _, s := range st.Servers {
		if s.Total != 5 || s.Active != 0 || s.ConnectTime <= 0 {
			t.Errorf("server %s: %+v", s.Name, s)
		}
	}
}

func TestClusterClientHalfClose(t *testing.T) {
	a := startBackend(t, "a", echoNamed("a"))
	vc := testClusterConfig([]netip.AddrPort{a.addr})
	c := startCluster(t, vc, testPool(t, vc), Options{}, nil)

	conn := dial(t, c, netip.Addr{})
	io.WriteString(conn, "hello\n")
	if err := conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	// "bye" proves the backend saw EOF and could still answer.
	if string(got) != "a\nhello\nbye\n" {
		t.Fatalf("client read %q", got)
	}
}

func TestClusterServerHalfClose(t *testing.T) {
	heard := make(chan string, 1)
	a := startBackend(t, "a", func(c *net.TCPConn) {
		io.WriteString(c, "a\n")
		c.CloseWrite()
		b, _ := io.ReadAll(c) // the client may still send after our EOF
		heard <- string(b)
	})
	vc := testClusterConfig([]netip.AddrPort{a.addr})
	c := startCluster(t, vc, testPool(t, vc), Options{}, nil)

	conn := dial(t, c, netip.Addr{})
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "a\n" {
		t.Fatalf("read %q, %v; want the greeting then EOF", got, err)
	}
	io.WriteString(conn, "after your EOF\n")
	conn.CloseWrite()
	select {
	case s := <-heard:
		if s != "after your EOF\n" {
			t.Fatalf("backend heard %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backend never heard the client after its half-close")
	}
}

func TestClusterIdleTimeout(t *testing.T) {
	sink := startBackend(t, "sink", func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	vc := testClusterConfig([]netip.AddrPort{sink.addr})
	idle := 300 * time.Millisecond
	c := startCluster(t, vc, testPool(t, vc), Options{IdleTimeout: idle}, nil)

	conn := dial(t, c, netip.Addr{})
	// Traffic in one direction only keeps the connection up well past idle.
	for range 8 {
		if _, err := io.WriteString(conn, "tick\n"); err != nil {
			t.Fatalf("connection closed while busy: %v", err)
		}
		time.Sleep(idle / 3)
	}
	start := time.Now()
	b, err := io.ReadAll(conn) // then silence closes it
	if err != nil || len(b) != 0 {
		t.Fatalf("read %q, %v; want a clean EOF", b, err)
	}
	if d := time.Since(start); d < idle/2 || d > idle+500*time.Millisecond {
		t.Errorf("closed after %v of silence, idle timeout is %v", d, idle)
	}
	testutil.WaitFor(t, "the connection to finish", func() bool { return c.Stats().Active == 0 })
	if st := c.Stats(); st.BytesIn != 8*5 {
		t.Errorf("BytesIn = %d, want 40", st.BytesIn)
	}
}

func TestClusterDeadServerRetried(t *testing.T) {
	live := startBackend(t, "live", echoNamed("live"))
	vc := testClusterConfig([]netip.AddrPort{deadAddr(t), live.addr})
	pool := testPool(t, vc)
	c := startCluster(t, vc, pool, Options{}, nil)

	for range 6 {
		conn := dial(t, c, netip.Addr{})
		if name := readLine(t, bufio.NewReader(conn)); name != "live" {
			t.Fatalf("served by %q", name)
		}
		conn.Close()
	}
	testutil.WaitFor(t, "connections to finish", func() bool { return c.Stats().Active == 0 })
	st := c.Stats()
	if st.Refused[RefusedConnectFailed] != 0 {
		t.Errorf("refused %d connect_failed", st.Refused[RefusedConnectFailed])
	}
	// Round robin keeps offering the dead server (health checks are what
	// take it out); each time the retry saves the client.
	dead := pool.Server("s0")
	if dead.Failures() < 3 || dead.Active() != 0 {
		t.Errorf("dead server: failures=%d active=%d, want ≥3 and 0", dead.Failures(), dead.Active())
	}
}

func TestClusterAllServersDead(t *testing.T) {
	vc := testClusterConfig([]netip.AddrPort{deadAddr(t), deadAddr(t)})
	pool := testPool(t, vc)
	c := startCluster(t, vc, pool, Options{}, nil)

	expectRefused(t, c, netip.Addr{})
	testutil.WaitFor(t, "the refusal to be counted", func() bool { return c.Stats().Refused[RefusedConnectFailed] == 1 })
	for _, s := range pool.Servers() {
		if s.Failures() != 1 || s.Active() != 0 {
			t.Errorf("%s: failures=%d active=%d", s.Name, s.Failures(), s.Active())
		}
	}
}

func TestClusterNoServerRefusedAtOnce(t *testing.T) {
	a := startBackend(t, "a", echoNamed("a"))
	vc := testClusterConfig([]netip.AddrPort{a.addr})
	pool := testPool(t, vc)
	pool.Server("s0").SetHealthy(false)
	pool.Refresh()
	c := startCluster(t, vc, pool, Options{}, nil)

	expectRefused(t, c, netip.Addr{})
	testutil.WaitFor(t, "no_server", func() bool { return c.Stats().Refused[RefusedNoServer] == 1 })
}

func TestClusterStandbyRefuses(t *testing.T) {
	a := startBackend(t, "a", echoNamed("a"))
	vc := testClusterConfig([]netip.AddrPort{a.addr})
	c := startCluster(t, vc, testPool(t, vc), Options{}, nil)

	c.SetActive(false)
	expectRefused(t, c, netip.Addr{})
	testutil.WaitFor(t, "standby", func() bool { return c.Stats().Refused[RefusedStandby] == 1 })
	c.SetActive(true)
	if name := readLine(t, bufio.NewReader(dial(t, c, netip.Addr{}))); name != "a" {
		t.Fatalf("after SetActive(true): %q", name)
	}
}

func TestClusterAllowList(t *testing.T) {
	a := startBackend(t, "a", echoNamed("a"))
	vc := testClusterConfig([]netip.AddrPort{a.addr})
	vc.Allow = []string{"127.0.0.1/32"}
	c := startCluster(t, vc, testPool(t, vc), Options{}, nil)

	expectRefused(t, c, netip.MustParseAddr("127.0.0.2"))
	testutil.WaitFor(t, "allow", func() bool { return c.Stats().Refused[RefusedAllow] == 1 })
	if name := readLine(t, bufio.NewReader(dial(t, c, loopback))); name != "a" {
		t.Fatalf("allowed client got %q", name)
	}
}

func TestClusterMaxConns(t *testing.T) {
	a := startBackend(t, "a", echoNamed("a"))
	vc := testClusterConfig([]netip.AddrPort{a.addr})
	vc.MaxConns = 2
	c := startCluster(t, vc, testPool(t, vc), Options{}, nil)

	var held []*net.TCPConn
	for range 2 {
		conn := dial(t, c, netip.Addr{})
		readLine(t, bufio.NewReader(conn))
		held = append(held, conn)
	}
	expectRefused(t, c, netip.Addr{})
	testutil.WaitFor(t, "max_conns", func() bool { return c.Stats().Refused[RefusedMaxConns] == 1 })
	held[0].Close()
	testutil.WaitFor(t, "a slot to free", func() bool { return c.Stats().Active == 1 })
	if name := readLine(t, bufio.NewReader(dial(t, c, netip.Addr{}))); name != "a" {
		t.Fatalf("after a slot freed: %q", name)
	}
}

// TestServerMaxConns: a server at its max_conns gets no more; the next
// goes to another server, and with every server full the client is
// refused and counted.
func TestServerMaxConns(t *testing.T) {
	a := startBackend(t, "a", echoNamed("a"))
	b := startBackend(t, "b", echoNamed("b"))
	vc := testClusterConfig([]netip.AddrPort{a.addr, b.addr})
	vc.Servers[0].MaxConns = 1
	vc.Servers[1].MaxConns = 1
	c := startCluster(t, vc, testPool(t, vc), Options{}, nil)

	got := map[string]bool{}
	var held []*net.TCPConn
	for range 2 {
		conn := dial(t, c, netip.Addr{})
		got[readLine(t, bufio.NewReader(conn))] = true
		held = append(held, conn)
	}
	if !got["a"] || !got["b"] {
		t.Fatalf("two connections with max_conns 1 each reached %v, want both servers", got)
	}
	expectRefused(t, c, netip.Addr{})
	testutil.WaitFor(t, "max_conns refusal", func() bool { return c.Stats().Refused[RefusedMaxConns] == 1 })
	held[0].Close()
	testutil.WaitFor(t, "a slot to free", func() bool { return c.Stats().Active == 1 })
	if name := readLine(t, bufio.NewReader(dial(t, c, netip.Addr{}))); name == "" {
		t.Fatal("no server after a slot freed")
	}
}

func TestClusterProxyProtocolV2(t *testing.T) {
	headers := make(chan []byte, 1)
	a := startBackend(t, "a", func(c *net.TCPConn) {
		h := make([]byte, ppv2FixedLen+ppv2TCP4Len)
		if _, err := io.ReadFull(c, h); err != nil {
			headers <- nil
			return
		}
		headers <- h
		io.Copy(c, c)
	})
	vc := testClusterConfig([]netip.AddrPort{a.addr})
	vc.Servers[0].SendProxy = true
	c := startCluster(t, vc, testPool(t, vc), Options{}, nil)

	conn := dial(t, c, netip.Addr{})
	io.WriteString(conn, "data after the header\n")
	from := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	vip := c.ListenAddr()
	want := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x01")
	want = append(want, byte(from.Port()>>8), byte(from.Port()), byte(vip.Port()>>8), byte(vip.Port()))
	select {
	case h := <-headers:
		if !bytes.Equal(h, want) {
			t.Fatalf("backend got header\n%x\nwant\n%x", h, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no header")
	}
	if got := readLine(t, bufio.NewReader(conn)); got != "data after the header" {
		t.Fatalf("echo after header = %q", got)
	}
}

func TestClusterPanicRecovered(t *testing.T) {
	a := startBackend(t, "a", echoNamed("a"))
	vc := testClusterConfig([]netip.AddrPort{a.addr})
	var n atomic.Int32
	c := startCluster(t, vc, testPool(t, vc), Options{}, func(*net.TCPConn) {
		if n.Add(1) == 1 {
			panic("injected")
		}
	})

	expectRefused(t, c, netip.Addr{})
	testutil.WaitFor(t, "the panic to be counted", func() bool { return c.Stats().Panics == 1 })
	if name := readLine(t, bufio.NewReader(dial(t, c, netip.Addr{}))); name != "a" {
		t.Fatalf("after a panic: %q", name)
	}
}

// stickyMap is a StickyTable for tests.
type stickyMap struct {
	mu sync.Mutex
	m  map[netip.Addr]string
}

func (s *stickyMap) Lookup(c netip.Addr) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[c]
	return v, ok
}

func (s *stickyMap) Store(c netip.Addr, server string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[c] = server
}

func TestClusterSticky(t *testing.T) {
	a, b := startBackend(t, "a", echoNamed("a")), startBackend(t, "b", echoNamed("b"))
	vc := testClusterConfig([]netip.AddrPort{a.addr, b.addr})
	pool := testPool(t, vc)
	sticky := &stickyMap{m: map[netip.Addr]string{loopback: "s1"}}
	c := startCluster(t, vc, pool, Options{Sticky: sticky}, nil)

	for range 3 {
		conn := dial(t, c, netip.Addr{})
		if name := readLine(t, bufio.NewReader(conn)); name != "b" {
			t.Fatalf("sticky client went to %q", name)
		}
		conn.Close()
	}
	pool.Server("s1").SetAdmin(Disabled)
	pool.Refresh()
	if name := readLine(t, bufio.NewReader(dial(t, c, netip.Addr{}))); name != "a" {
		t.Fatalf("with its server disabled the client went to %q", name)
	}
	if got, _ := sticky.Lookup(loopback); got != "s0" {
		t.Errorf("sticky entry = %q, want the new server s0", got)
	}
}

func TestClusterServeAndDrain(t *testing.T) {
	a := startBackend(t, "a", echoNamed("a"))
	vc := testClusterConfig([]netip.AddrPort{a.addr})
	c, err := NewTCPCluster(vc, testPool(t, vc), testEngine(t), Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	c.SetActive(true)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx) }()

	conn := dial(t, c, netip.Addr{})
	r := bufio.NewReader(conn)
	readLine(t, r)
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if probe, err := net.DialTimeout("tcp", c.ListenAddr().String(), time.Second); err == nil {
		// Something accepted: this cluster only if it proxies to a. (A
		// parallel test's listener may have been given the freed port.)
		probe.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if line, _ := bufio.NewReader(probe).ReadString('\n'); line == "a\n" {
			t.Error("listener still accepts after Serve returned")
		}
		probe.Close()
	}
	// The connection in flight carries on.
	io.WriteString(conn, "still here\n")
	if got := readLine(t, r); got != "still here" {
		t.Fatalf("in-flight connection: %q", got)
	}
	short, stop := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer stop()
	c.Drain(short)
	if c.Stats().Active != 1 {
		t.Fatal("Drain with a live connection should have waited for its context")
	}
	conn.CloseWrite()
	drained := make(chan struct{})
	go func() { c.Drain(context.Background()); close(drained) }()
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return after the last connection ended")
	}
}
