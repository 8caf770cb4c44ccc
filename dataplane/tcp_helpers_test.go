package dataplane

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// testBackend is a real TCP server on 127.0.0.1 run by a test.
type testBackend struct {
	name string
	addr netip.AddrPort
}

// startBackend serves each connection with handle until the test ends.
func startBackend(t testing.TB, name string, handle func(c *net.TCPConn)) testBackend {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				handle(c)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return testBackend{name: name, addr: ln.Addr().(*net.TCPAddr).AddrPort()}
}

// echoNamed says its name on a line, echoes until EOF, then says "bye"
// and closes: a client's half-close reaches it and it can still answer.
func echoNamed(name string) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		if _, err := io.WriteString(c, name+"\n"); err != nil {
			return
		}
		if _, err := io.Copy(c, c); err != nil {
			return
		}
		io.WriteString(c, "bye\n")
	}
}

// deadAddr is a 127.0.0.1 port that nothing listens on.
func deadAddr(t testing.TB) netip.AddrPort {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return a
}

// testClusterConfig returns a cluster on 127.0.0.1, any port, with the
// given servers named s0, s1, ... unless names are given.
func testClusterConfig(addrs []netip.AddrPort) config.VirtualCluster {
	vc := config.VirtualCluster{Name: "web", VIP: "127.0.0.1", Port: 0, Protocol: "tcp", Algorithm: RoundRobin}
	for i, a := range addrs {
		vc.Servers = append(vc.Servers, config.Server{Name: "s" + string(rune('0'+i)), Address: a.String(), Weight: 1})
	}
	return vc
}

// testPool builds the pool of vc the way the node does.
func testPool(t testing.TB, vc config.VirtualCluster) *Pool {
	t.Helper()
	p, err := PoolFor(vc)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startCluster listens, serves and activates a cluster until the test
// ends, when it also checks that every connection was settled.
func startCluster(t testing.TB, vc config.VirtualCluster, pool *Pool, opts Options, hook func(*net.TCPConn)) *TCPCluster {
	t.Helper()
	return startClusterWith(t, vc, pool, nil, opts, hook)
}

// startClusterWith is startCluster with an engine (nil: a GoEngine).
func startClusterWith(t testing.TB, vc config.VirtualCluster, pool *Pool, eng Engine, opts Options, hook func(*net.TCPConn)) *TCPCluster {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	if eng == nil {
		eng = testEngine(t)
	}
	c, err := NewTCPCluster(vc, pool, eng, opts, log)
	if err != nil {
		t.Fatal(err)
	}
	if clusterSlowPath {
		c.fast = false
	}
	c.testHook = hook
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx) }()
	c.SetActive(true)
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		c.Drain(dctx)
		if st := c.Stats(); st.Active != 0 {
			t.Errorf("after drain: %d connections active", st.Active)
		}
	})
	return c
}

// clusterEngine, when set, builds the engine of the clusters that tests
// start without one (nil: a GoEngine); clusterSlowPath keeps them off the
// fast accept path. TestClusterTestsOverEpoll sets them, for its subtests.
var (
	clusterEngine   func(t testing.TB) Engine
	clusterSlowPath bool
)

// testEngine is the engine for a test's cluster: clusterEngine's or a
// GoEngine.
func testEngine(t testing.TB) Engine {
	if clusterEngine != nil {
		return clusterEngine(t)
	}
	return NewGoEngine(nil)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// dial connects to the cluster from 127.0.0.1 (or from, if valid), with
// a deadline that bounds the test.
func dial(t testing.TB, c *TCPCluster, from netip.Addr) *net.TCPConn {
	t.Helper()
	conn, err := dialErr(t, c, from)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func dialErr(t testing.TB, c *TCPCluster, from netip.Addr) (*net.TCPConn, error) {
	var laddr *net.TCPAddr
	if from.IsValid() {
		laddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0))
	}
	conn, err := net.DialTCP("tcp", laddr, net.TCPAddrFromAddrPort(c.ListenAddr()))
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { conn.Close() })
	return conn, nil
}

// readLine reads one line (without the newline) from r.
func readLine(t testing.TB, r *bufio.Reader) string {
	t.Helper()
	s, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read line: %v (got %q)", err, s)
	}
	return strings.TrimSuffix(s, "\n")
}

// expectRefused connects from from (if valid) and checks that the
// client is reset at once: not hung, not served. On loopback the reset
// may even beat the end of connect(2).
func expectRefused(t testing.TB, c *TCPCluster, from netip.Addr) {
	t.Helper()
	start := time.Now()
	conn, err := dialErr(t, c, from)
	var b []byte
	if err == nil {
		b, err = io.ReadAll(conn)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read = %q, %v; want connection reset", b, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("reset took %v", d)
	}
}
