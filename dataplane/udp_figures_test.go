//go:build linux

package dataplane

import (
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestUDPRelayFigures runs interleaved rounds of the same load (many
// clients, one DNS-sized query each in flight) straight to a server,
// through the UDPCluster and through a plain Go relay, and logs medians:
// queries/s, the ratio to direct, and the process CPU time per query (the
// relay's cost is its excess over direct). Interleaving keeps a busy
// machine's drift out of the ratios. Set TANDEM_FIGURES=1 to run it.
func TestUDPRelayFigures(t *testing.T) {
	if os.Getenv("TANDEM_FIGURES") == "" {
		t.Skip("set TANDEM_FIGURES=1 for the relay figures")
	}
	const rounds, each = 7, 700 * time.Millisecond
	srv := startUDPBackend(t, "s", false)
	vc := udpClusterConfig(srv)
	targets := []struct {
		name string
		addr netip.AddrPort
	}{
		{"direct", srv.addr},
		{"tandem", startUDPCluster(t, vc, testPool(t, vc), UDPOptions{}, nil).ListenAddr()},
		{"tandem-2loops", startUDPCluster(t, vc, testPool(t, vc), UDPOptions{Loops: 2}, nil).ListenAddr()},
		{"plain-go", startPlainUDPRelay(t, srv.addr)},
	}
	qps := make([][]float64, len(targets))
	cpu := make([][]float64, len(targets))
	for r := range rounds {
		for k := range targets {
			i := (k + r) % len(targets) // rotate the order too
			q, c := udpLoad(t, targets[i].addr, udpBenchClients, each)
			qps[i] = append(qps[i], q)
			cpu[i] = append(cpu[i], c)
		}
	}
	med := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	d := med(qps[0])
	dc := med(cpu[0])
	for i, tg := range targets {
		t.Logf("%-14s %8.0f queries/s  %.2fx direct  %5.1f µs CPU/query (+%.1f over direct)  rounds %v",
			tg.name, med(qps[i]), med(qps[i])/d, med(cpu[i]), med(cpu[i])-dc, roundAll(qps[i]))
	}
}

// udpLoad runs clients for about dur and returns queries/s and the
// process's CPU microseconds per query.
func udpLoad(t *testing.T, addr netip.AddrPort, clients int, dur time.Duration) (qps, cpuPerQuery float64) {
	conns := make([]*net.UDPConn, clients)
	for i := range conns {
		conns[i] = udpClient(t, netip.Addr{})
		defer conns[i].Close()
	}
	var stop atomic.Bool
	var done atomic.Int64
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now()
	for _, conn := range conns {
		wg.Go(func() {
			var buf [1500]byte
			for !stop.Load() {
				conn.WriteToUDPAddrPort(udpQuery, addr)
				conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, _, err := conn.ReadFromUDPAddrPort(buf[:]); err == nil {
					done.Add(1)
				}
			}
		})
	}
	time.Sleep(dur)
	stop.Store(true)
	wg.Wait()
	el, cpu := time.Since(start), cpuTime()-cpu0
	n := float64(done.Load())
	return n / el.Seconds(), float64(cpu.Microseconds()) / n
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func roundAll(v []float64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}
