package main

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestDNSQueryAndAnswer(t *testing.T) {
	q := dnsQuery(0xbeef)
	if len(q) != 12+12+4 || q[0] != 0xbe || q[1] != 0xef || q[2]&0x80 != 0 || q[5] != 1 {
		t.Fatalf("query % x: want id beef, QR clear, one question", q)
	}
	if dnsAnswers(q, 0xbeef) {
		t.Error("a query (QR clear) taken for an answer")
	}
	a := append([]byte(nil), q...)
	a[2] |= 0x80
	for _, tc := range []struct {
		name string
		b    []byte
		id   uint16
		want bool
	}{
		{"answer", a, 0xbeef, true},
		{"other id", a, 0xbeee, false},
		{"short", a[:11], 0xbeef, false},
		{"SERVFAIL", append(append([]byte(nil), a[:3]...), append([]byte{a[3] | 2}, a[4:]...)...), 0xbeef, false},
	} {
		if got := dnsAnswers(tc.b, tc.id); got != tc.want {
			t.Errorf("%s: dnsAnswers = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNewLatReportPercentiles(t *testing.T) {
	var rtts []time.Duration
	for i := 1000; i >= 1; i-- { // 1..1000 µs, unsorted
		rtts = append(rtts, time.Duration(i)*time.Microsecond)
	}
	r := newLatReport(rtts, 1003, 3)
	want := latReport{Sent: 1003, OK: 1000, Lost: 3, P50US: 500, P90US: 900, P99US: 990, P999US: 999, MaxUS: 1000}
	if r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
	if r := newLatReport(nil, 5, 5); r.P50US != -1 || r.MaxUS != -1 || r.OK != 0 {
		t.Errorf("no answers: %+v, want -1 percentiles", r)
	}
}

// TestFlowSourceDistinct: 100,000 flows over 100 sockets are 100,000
// distinct (socket, source address) pairs, all in 127.1.0.0/16.
func TestFlowSourceDistinct(t *testing.T) {
	seen := map[[5]byte]bool{}
	for i := range 100000 {
		s, a := flowSource(i, 100)
		if a[0] != 127 || a[1] != 1 || a[3] == 0 || s < 0 || s >= 100 {
			t.Fatalf("flow %d: socket %d, source %v", i, s, a)
		}
		k := [5]byte{byte(s), a[0], a[1], a[2], a[3]}
		if seen[k] {
			t.Fatalf("flow %d: socket %d source %v used twice", i, s, a)
		}
		seen[k] = true
	}
}

// dnsResponder answers every query on loopback with QR set, except that
// it drops the first query with id drop; it records who asked.
func dnsResponder(t *testing.T, drop uint16) (netip.AddrPort, func() map[netip.AddrPort]int) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	from := map[netip.AddrPort]int{}
	dropped := false
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, a, err := pc.ReadFromUDPAddrPort(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil || n < 12 {
				continue
			}
			mu.Lock()
			from[a]++
			skip := !dropped && uint16(buf[0])<<8|uint16(buf[1]) == drop
			dropped = dropped || skip
			mu.Unlock()
			if skip {
				continue
			}
			buf[2] |= 0x80
			pc.WriteToUDPAddrPort(buf[:n], a)
		}
	})
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), func() map[netip.AddrPort]int {
		mu.Lock()
		defer mu.Unlock()
		return from
	}
}

func TestDNSLatencyOnLoopback(t *testing.T) {
	addr, _ := dnsResponder(t, 0xffff)
	r, err := dnsLatency(addr.String(), 400, 4, 300*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// 4 sockets at 100 q/s each for 300 ms: about 30 each
	if r.Lost != 0 || r.OK != r.Sent || r.OK < 60 || r.OK > 140 {
		t.Errorf("%+v: want about 120 queries, all answered", r)
	}
	if !(0 < r.P50US && r.P50US <= r.P99US && r.P99US <= r.MaxUS) {
		t.Errorf("percentiles out of order: %+v", r)
	}
}

// TestDNSFlowsOnLoopback: 60 flows over 3 sockets reach the server from
// 60 distinct address and port pairs; the one query lost is asked again.
func TestDNSFlowsOnLoopback(t *testing.T) {
	addr, seen := dnsResponder(t, 7)
	f, err := openFlows(addr, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	ok, failed, retried, err := f.ask(60, 16, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if ok != 60 || failed != 0 || retried != 1 {
		t.Errorf("ok %d failed %d retried %d; want 60, 0 and 1 (flow 7's first query dropped)", ok, failed, retried)
	}
	from := seen()
	if len(from) != 60 {
		t.Errorf("the server saw %d client address and port pairs, want 60: %v", len(from), from)
	}
	for a := range from {
		if b := a.Addr().As4(); b[0] != 127 || b[1] != 1 {
			t.Errorf("a flow from %v, want 127.1.0.0/16", a)
		}
	}
}
