//go:build linux

package dataplane

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkUDPRelayDNS is the comparison with real programs: dnsperf (64
// clients, 64 queries in flight) asks dnsmasq b.N questions directly,
// through the UDPCluster and through the plain Go relay, and the
// benchmark reports dnsperf's answers/s and this process's CPU µs per
// answer (the relay's cost; about 0 when direct). Both must be installed
// (Debian's dnsperf and dnsmasq-base). Pin the test binary to one core
// and give dnsperf the other, as the lab notes did:
//
//	TANDEM_DNSPERF_CPU=0 taskset -c 1 ./dataplane.test -test.run '^$' -test.bench UDPRelayDNS -test.count 5
func BenchmarkUDPRelayDNS(b *testing.B) {
	for _, bin := range []string{"dnsperf", "dnsmasq"} {
		if _, err := exec.LookPath(bin); err != nil {
			b.Skipf("%s not installed", bin)
		}
	}
	dir := b.TempDir()
	port := udpDeadAddr(b).Port()
	dns := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	dm := exec.Command("dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--bind-interfaces", "--listen-address=127.0.0.1", "--port="+strconv.Itoa(int(port)),
		"--address=/example.test/192.0.2.1", "--pid-file="+dir+"/pid", "--dns-forward-max=100000")
	if err := dm.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { dm.Process.Kill(); dm.Wait() })
	queries := dir + "/queries"
	if err := os.WriteFile(queries, []byte("a.example.test A\nb.example.test A\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	waitDNSAnswers(b, dns)
	backend := &udpBackend{name: "dnsmasq", addr: dns}
	vc := udpClusterConfig(backend)
	b.Run("direct", func(b *testing.B) { benchDNSPerf(b, dns, queries) })
	b.Run("tandem", func(b *testing.B) {
		benchDNSPerf(b, startUDPCluster(b, vc, testPool(b, vc), UDPOptions{}, nil).ListenAddr(), queries)
	})
	b.Run("plain-go", func(b *testing.B) { benchDNSPerf(b, startPlainUDPRelay(b, dns), queries) })
}

// waitDNSAnswers waits (5 s at most) until the server at addr answers a
// query: dnsmasq takes a moment to bind.
func waitDNSAnswers(b *testing.B, addr netip.AddrPort) {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	q := []byte{0xbe, 0xef, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1}
	buf := make([]byte, 512)
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		c.Write(q)
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && n >= 12 && buf[0] == 0xbe && buf[1] == 0xef {
			return
		}
	}
	b.Fatalf("dnsmasq on %s did not answer within 5s", addr)
}

// benchDNSPerf has dnsperf ask addr b.N questions (the two of the query
// file in turn) and reports its answers/s and this process's CPU µs per
// answer.
func benchDNSPerf(b *testing.B, addr netip.AddrPort, queries string) {
	args := []string{"dnsperf", "-s", addr.Addr().String(), "-p", strconv.Itoa(int(addr.Port())),
		"-d", queries, "-n", strconv.Itoa((b.N + 1) / 2), "-c", "64", "-q", "64", "-t", "1"}
	if c := os.Getenv("TANDEM_DNSPERF_CPU"); c != "" {
		args = append([]string{"taskset", "-c", c}, args...)
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	cpu := cpuTime() - cpu0
	b.StopTimer()
	if err != nil {
		b.Fatalf("dnsperf: %v\n%s", err, out)
	}
	qps := dnsperfFigure(string(out), "Queries per second:")
	answered := dnsperfFigure(string(out), "Queries completed:")
	if qps == 0 || answered == 0 {
		b.Fatalf("dnsperf said:\n%s", out)
	}
	b.ReportMetric(qps, "answers/s")
	b.ReportMetric(float64(cpu.Microseconds())/answered, "cpu-µs/answer")
}

// dnsperfFigure is the number after label in dnsperf's summary (0 if none).
func dnsperfFigure(out, label string) float64 {
	_, rest, ok := strings.Cut(out, label)
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
