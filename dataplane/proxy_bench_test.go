package dataplane

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// benchEngine is an Engine to benchmark; start builds it for one run.
type benchEngine struct {
	name  string
	start func(b *testing.B) Engine
}

// benchTarget starts, for each of direct and every engine, the address a
// benchmark client connects to: the backend itself or a cluster over it.
func benchTargets(b *testing.B, backend netip.AddrPort) []struct {
	name string
	addr func(b *testing.B) netip.AddrPort
} {
	targets := []struct {
		name string
		addr func(b *testing.B) netip.AddrPort
	}{{"direct", func(*testing.B) netip.AddrPort { return backend }}}
	for _, e := range benchEngineList() {
		targets = append(targets, struct {
			name string
			addr func(b *testing.B) netip.AddrPort
		}{e.name, func(b *testing.B) netip.AddrPort {
			vc := testClusterConfig([]netip.AddrPort{backend})
			c := startClusterWith(b, vc, testPool(b, vc), e.start(b), Options{}, nil)
			return c.ListenAddr()
		}})
	}
	return targets
}

// answer100 reads a 100-byte request and writes a 100-byte response, per
// request, until EOF.
func answer100(c *net.TCPConn) {
	req, resp := make([]byte, 100), make([]byte, 100)
	for {
		if _, err := io.ReadFull(c, req); err != nil {
			return
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

// BenchmarkProxyShortConn: connect, one 100-byte request and response,
// close; one connection per iteration, as HTTP without keep-alive.
func BenchmarkProxyShortConn(b *testing.B) {
	backend := startBackend(b, "bench", answer100)
	for _, tgt := range benchTargets(b, backend.addr) {
		b.Run(tgt.name, func(b *testing.B) {
			addr := net.TCPAddrFromAddrPort(tgt.addr(b))
			req, resp := make([]byte, 100), make([]byte, 100)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				c, err := net.DialTCP("tcp", nil, addr)
				if err != nil {
					b.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, resp); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

// BenchmarkProxyKeepAlive: 100-byte requests and responses, one at a time,
// over one connection.
func BenchmarkProxyKeepAlive(b *testing.B) {
	backend := startBackend(b, "bench", answer100)
	for _, tgt := range benchTargets(b, backend.addr) {
		b.Run(tgt.name, func(b *testing.B) {
			c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(tgt.addr(b)))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			req, resp := make([]byte, 100), make([]byte, 100)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
