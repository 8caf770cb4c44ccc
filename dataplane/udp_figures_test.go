//go:build linux

package dataplane

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
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

// TestUDPRelayDNSFigures is the comparison with real programs:
// dnsperf (64 clients, 64 queries in flight) asks dnsmasq directly,
// through the UDPCluster and through the plain Go relay, in interleaved
// rounds; it logs median answers/s and ratios. Both must be installed
// (Debian's dnsperf and dnsmasq-base). Run the test binary pinned to one
// core and give dnsperf the other, as the lab notes did:
//
//	TANDEM_FIGURES=1 TANDEM_DNSPERF_CPU=0 taskset -c 1 ./dataplane.test -test.run DNSFigures -test.v
func TestUDPRelayDNSFigures(t *testing.T) {
	if os.Getenv("TANDEM_FIGURES") == "" {
		t.Skip("set TANDEM_FIGURES=1 for the relay figures")
	}
	for _, bin := range []string{"dnsperf", "dnsmasq"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	dir := t.TempDir()
	port := udpDeadAddr(t).Port()
	dns := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	dm := exec.Command("dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--bind-interfaces", "--listen-address=127.0.0.1", "--port="+strconv.Itoa(int(port)),
		"--address=/example.test/192.0.2.1", "--pid-file="+dir+"/pid", "--dns-forward-max=100000")
	if err := dm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dm.Process.Kill(); dm.Wait() })
	queries := dir + "/queries"
	if err := os.WriteFile(queries, []byte("a.example.test A\nb.example.test A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	backend := &udpBackend{name: "dnsmasq", addr: dns}
	vc := udpClusterConfig(backend)
	targets := []struct {
		name string
		addr netip.AddrPort
	}{
		{"direct", dns},
		{"tandem", startUDPCluster(t, vc, testPool(t, vc), UDPOptions{}, nil).ListenAddr()},
		{"plain-go", startPlainUDPRelay(t, dns)},
	}
	const rounds = 5
	qps := make([][]float64, len(targets))
	cpu := make([][]float64, len(targets))
	for r := range rounds {
		for k := range targets {
			i := (k + r) % len(targets)
			q, c := dnsperf(t, targets[i].addr, queries)
			qps[i] = append(qps[i], q)
			cpu[i] = append(cpu[i], c)
		}
	}
	med := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	d := med(qps[0])
	for i, tg := range targets {
		t.Logf("%-9s %8.0f answers/s  %.2fx direct  relay %4.1f µs CPU/answer  rounds %v",
			tg.name, med(qps[i]), med(qps[i])/d, med(cpu[i]), roundAll(qps[i]))
	}
}

// dnsperf runs dnsperf against addr for 2s and returns answers/s and this
// process's CPU µs per answer (the relay's cost; ~0 when direct).
func dnsperf(t *testing.T, addr netip.AddrPort, queries string) (qps, cpuPerAnswer float64) {
	args := []string{"dnsperf", "-s", addr.Addr().String(), "-p", strconv.Itoa(int(addr.Port())),
		"-d", queries, "-l", "2", "-c", "64", "-q", "64", "-t", "1"}
	if c := os.Getenv("TANDEM_DNSPERF_CPU"); c != "" {
		args = append([]string{"taskset", "-c", c}, args...)
	}
	cpu0 := cpuTime()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	cpu := cpuTime() - cpu0
	if err != nil {
		t.Fatalf("dnsperf: %v\n%s", err, out)
	}
	_, rest, ok := strings.Cut(string(out), "Queries per second:")
	if !ok {
		t.Fatalf("dnsperf said:\n%s", out)
	}
	qps, err = strconv.ParseFloat(strings.Fields(rest)[0], 64)
	if err != nil || qps == 0 {
		t.Fatalf("dnsperf said:\n%s", out)
	}
	return qps, float64(cpu.Microseconds()) / (qps * 2)
}
