//go:build linux

package dataplane

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// udpBackend is a real UDP server on 127.0.0.1 run by a test: it answers
// each datagram with its name, "|" and the datagram.
type udpBackend struct {
	name string
	addr netip.AddrPort
	mu   sync.Mutex
	from map[netip.AddrPort]int // datagrams by source (the relay's sockets)
}

// startUDPBackend serves until the test ends. quiet backends answer nothing.
func startUDPBackend(t testing.TB, name string, quiet bool) *udpBackend {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadBuffer(4 << 20)
	b := &udpBackend{name: name, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(), from: map[netip.AddrPort]int{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 70000)
		out := append([]byte(name), '|')
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			b.mu.Lock()
			b.from[from]++
			b.mu.Unlock()
			if !quiet {
				conn.WriteToUDPAddrPort(append(out[:len(name)+1], buf[:n]...), from)
			}
		}
	})
	t.Cleanup(func() { conn.Close(); wg.Wait() })
	return b
}

// sources is the number of distinct source addresses the backend saw.
func (b *udpBackend) sources() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.from)
}

// udpClusterConfig is a UDP cluster on 127.0.0.1, any port, over backends.
func udpClusterConfig(backends ...*udpBackend) config.VirtualCluster {
	vc := config.VirtualCluster{Name: "dns", VIP: "127.0.0.1", Port: 0, Protocol: "udp", Algorithm: RoundRobin}
	for _, b := range backends {
		vc.Servers = append(vc.Servers, config.Server{Name: b.name, Address: b.addr.String(), Weight: 1})
	}
	return vc
}

// startUDPCluster listens, serves and activates a cluster until the test
// ends; tune, if not nil, adjusts it before Listen. At the end it checks
// that every flow ended and every server was released.
func startUDPCluster(t testing.TB, vc config.VirtualCluster, pool *Pool, opts UDPOptions, tune func(*UDPCluster)) *UDPCluster {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	c, err := NewUDPCluster(vc, pool, opts, log)
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(c)
	}
	if udpTestPark {
		c.park, c.fdShare = true, 0 // TestUDPParked: every flow parks
	}
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
		st := c.Stats()
		if st.Flows != 0 || st.Parked != 0 {
			t.Errorf("after Serve: %d flows live, %d parked", st.Flows, st.Parked)
		}
		if udpTestPark && st.ParkedTotal != st.FlowsTotal {
			t.Errorf("parked %d of %d flows, want all", st.ParkedTotal, st.FlowsTotal)
		}
		for _, s := range pool.Servers() {
			if s.Active() != 0 {
				t.Errorf("after Serve: server %s has %d flows", s.Name, s.Active())
			}
		}
	})
	return c
}

// udpClient is an unconnected client socket on from (127.0.0.1 if not
// valid), so the test sees the source of each answer.
func udpClient(t testing.TB, from netip.Addr) *net.UDPConn {
	t.Helper()
	if !from.IsValid() {
		from = netip.MustParseAddr("127.0.0.1")
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// ask sends p to to and waits up to wait for an answer; it returns the
// answering server's name, the echoed payload and the answer's source,
// or ok false on a timeout.
func ask(t testing.TB, conn *net.UDPConn, to netip.AddrPort, p []byte, wait time.Duration) (server string, echo []byte, from netip.AddrPort, ok bool) {
	t.Helper()
	if _, err := conn.WriteToUDPAddrPort(p, to); err != nil {
		t.Fatalf("send: %v", err)
	}
	buf := make([]byte, 70000)
	conn.SetReadDeadline(time.Now().Add(wait))
	n, from, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return "", nil, from, false
		}
		t.Fatalf("receive: %v", err)
	}
	name, echo, found := bytes.Cut(buf[:n], []byte("|"))
	if !found {
		t.Fatalf("answer %q has no server name", buf[:min(n, 40)])
	}
	return string(name), echo, from, true
}

// mustAsk is ask that fails the test on a timeout or a wrong echo or
// source; it returns the server's name.
func mustAsk(t testing.TB, conn *net.UDPConn, to netip.AddrPort, p string) string {
	t.Helper()
	name, echo, from, ok := ask(t, conn, to, []byte(p), 2*time.Second)
	if !ok {
		t.Fatalf("no answer to %q", p)
	}
	if string(echo) != p {
		t.Fatalf("echo %q, want %q", echo, p)
	}
	if from != to {
		t.Fatalf("answer from %s, want %s (the address asked)", from, to)
	}
	return name
}

// expectSilence sends p and checks that nothing comes back.
func expectSilence(t testing.TB, conn *net.UDPConn, to netip.AddrPort, p string) {
	t.Helper()
	if name, _, _, ok := ask(t, conn, to, []byte(p), 150*time.Millisecond); ok {
		t.Fatalf("%q was answered by %s; want it dropped", p, name)
	}
}

// mapSticky is a StickyTable for tests.
type mapSticky struct {
	mu sync.Mutex
	m  map[netip.Addr]string
}

func (s *mapSticky) Lookup(a netip.Addr) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[a]
	return v, ok
}

func (s *mapSticky) Store(a netip.Addr, server string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[netip.Addr]string{}
	}
	s.m[a] = server
}

// udpDeadAddr is a 127.0.0.1 UDP port that nothing listens on.
func udpDeadAddr(t testing.TB) netip.AddrPort {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	a := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	conn.Close()
	return a
}
