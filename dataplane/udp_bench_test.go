//go:build linux

package dataplane

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// udpBenchClients is how many clients query at once, each from its own
// socket (a flow of its own) with one query in flight, DNS style.
const udpBenchClients = 64

// udpQuery is a DNS-sized query (a question for a short name).
var udpQuery = make([]byte, 40)

// BenchmarkUDPRelay measures request/response rate with small datagrams
// and many clients: straight to the server, through the UDPCluster (its
// default of one loop waiting in Go's poller, blocking in epoll_wait, two
// loops), and through a plain Go relay with a goroutine and a 64 KiB
// buffer per flow, the baseline of the lab notes. Compare queries/s and
// CPU per query across sub-benchmarks (-count 5 and benchstat for the
// spread); everything shares the machine's cores.
func BenchmarkUDPRelay(b *testing.B) {
	srv := startUDPBackend(b, "s", false)
	vc := udpClusterConfig(srv)
	b.Run("direct", func(b *testing.B) { benchUDPQueries(b, srv.addr) })
	for _, tc := range []struct {
		name string
		opts UDPOptions
		tune func(*UDPCluster)
	}{
		{"tandem", UDPOptions{}, nil},
		// Every query timed for a retry (retry_timeout), copied and
		// matched to its answer: what retrying costs the data path.
		{"tandem-retry", UDPOptions{}, func(c *UDPCluster) {
			c.timed, c.retry, c.wait = true, int64(100*time.Millisecond), int64(100*time.Millisecond)
		}},
		{"tandem-blockwait", UDPOptions{}, func(c *UDPCluster) { c.blockWait = true }},
		{"tandem-2loops", UDPOptions{Loops: 2}, nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := startUDPCluster(b, vc, testPool(b, vc), tc.opts, tc.tune)
			benchUDPQueries(b, c.ListenAddr())
			if st := c.Stats(); st.DatagramsOut < uint64(b.N) {
				b.Errorf("relayed %d answers for %d queries", st.DatagramsOut, b.N)
			}
		})
	}
	b.Run("plain-go", func(b *testing.B) { benchUDPQueries(b, startPlainUDPRelay(b, srv.addr)) })
}

// benchUDPQueries sends b.N queries to addr from udpBenchClients clients
// and reports queries per second. A lost datagram is re-sent after 200ms.
func benchUDPQueries(b *testing.B, addr netip.AddrPort) {
	conns := make([]*net.UDPConn, udpBenchClients)
	for i := range conns {
		conns[i] = udpClient(b, netip.Addr{})
		conns[i].SetReadBuffer(1 << 20)
		// Warm the flow up, so the timed part is steady state.
		for try := 0; ; try++ {
			conns[i].WriteToUDPAddrPort(udpQuery, addr)
			conns[i].SetReadDeadline(time.Now().Add(time.Second))
			var buf [64]byte
			if _, _, err := conns[i].ReadFromUDPAddrPort(buf[:]); err == nil {
				break
			} else if try == 3 {
				b.Fatalf("no answer from %s: %v", addr, err)
			}
		}
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	var lost atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	var wg sync.WaitGroup
	for _, conn := range conns {
		wg.Go(func() {
			var buf [1500]byte
			for left.Add(-1) >= 0 {
				for {
					conn.WriteToUDPAddrPort(udpQuery, addr)
					conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
					if _, _, err := conn.ReadFromUDPAddrPort(buf[:]); err == nil {
						break
					}
					if lost.Add(1) > 1000 {
						return
					}
				}
			}
		})
	}
	wg.Wait()
	d, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	if n := lost.Load(); n > 1000 {
		b.Fatalf("%d queries lost", n)
	}
	b.ReportMetric(float64(b.N)/d.Seconds(), "queries/s")
	b.ReportMetric(float64(lost.Load()), "lost")
	// the whole process, clients included: a relay's cost is its excess
	// over direct's
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/query")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startPlainUDPRelay is the naive relay the lab notes measured: a reader
// on the VIP socket and, per flow, a connected socket with a goroutine and
// a 64 KiB buffer copying answers back. It has no idle timeout.
func startPlainUDPRelay(b testing.TB, server netip.AddrPort) netip.AddrPort {
	ln, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	flows := map[netip.AddrPort]*net.UDPConn{}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := ln.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			up := flows[from]
			if up == nil {
				if up, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(server)); err != nil {
					continue
				}
				flows[from] = up
				context.AfterFunc(ctx, func() { up.Close() })
				wg.Go(func() {
					buf := make([]byte, 65536)
					for {
						n, err := up.Read(buf)
						if err != nil {
							if errors.Is(err, net.ErrClosed) {
								return
							}
							continue
						}
						ln.WriteToUDPAddrPort(buf[:n], from)
					}
				})
			}
			up.Write(buf[:n])
		}
	})
	b.Cleanup(func() { cancel(); ln.Close(); wg.Wait() })
	return ln.LocalAddr().(*net.UDPAddr).AddrPort()
}
