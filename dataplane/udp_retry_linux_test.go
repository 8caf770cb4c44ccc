//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// scriptBackend is a UDP server on 127.0.0.1 that answers each datagram
// with its name, "|" and the datagram after delay, or never when quiet.
type scriptBackend struct {
	udpBackend
	mu   sync.Mutex
	got  [][]byte
	conn *net.UDPConn
}

func startScriptBackend(t testing.TB, name string, delay time.Duration, quiet bool) *scriptBackend {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b := &scriptBackend{conn: conn}
	b.name, b.addr = name, conn.LocalAddr().(*net.UDPAddr).AddrPort()
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 70000)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			p := append([]byte(nil), buf[:n]...)
			b.mu.Lock()
			b.got = append(b.got, p)
			b.mu.Unlock()
			if quiet {
				continue
			}
			out := append([]byte(name+"|"), p...)
			if delay == 0 {
				conn.WriteToUDPAddrPort(out, from)
				continue
			}
			wg.Add(1)
			time.AfterFunc(delay, func() { defer wg.Done(); conn.WriteToUDPAddrPort(out, from) })
		}
	})
	t.Cleanup(func() { conn.Close(); wg.Wait() })
	return b
}

func (b *scriptBackend) received() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.got)
}

// passiveLog records what a pool reports to passive health.
type passiveLog struct {
	mu  sync.Mutex
	evs []string
}

func (p *passiveLog) fn(server string, ok bool, what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ok {
		what = "ok"
	}
	p.evs = append(p.evs, server+": "+what)
}

func (p *passiveLog) events() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.evs)
}

// retryCluster starts a cluster over first (where the client is sent by
// a sticky entry) and second, with retry_timeout retry and checks of
// type check ("" none).
func retryCluster(t *testing.T, retry time.Duration, check string, first, second *scriptBackend) (*UDPCluster, *net.UDPConn, *passiveLog) {
	t.Helper()
	vc := udpClusterConfig(&first.udpBackend, &second.udpBackend)
	vc.RetryTimeout = retry
	if check != "" {
		vc.HealthCheck = &config.HealthCheck{Type: check}
	}
	pool := testPool(t, vc)
	var pl passiveLog
	pool.SetPassive(pl.fn)
	client := udpClient(t, netip.Addr{})
	sticky := &mapSticky{m: map[netip.Addr]string{netip.MustParseAddr("127.0.0.1"): first.name}}
	c := startUDPCluster(t, vc, pool, UDPOptions{Sticky: sticky}, nil)
	return c, client, &pl
}

// readAll collects what the client receives within wait.
func readAll(t *testing.T, conn *net.UDPConn, wait time.Duration) []string {
	t.Helper()
	var out []string
	buf := make([]byte, 70000)
	conn.SetReadDeadline(time.Now().Add(wait))
	for {
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return out
		}
		out = append(out, string(buf[:n]))
	}
}

// TestUDPRetryMovesFlow: a request the client's server leaves unanswered
// is sent, unchanged, to the other server after retry_timeout and
// answered once; the flow stays there, the dead server is reported to
// passive health, and nothing more is retried.
func TestUDPRetryMovesFlow(t *testing.T) {
	dead := startScriptBackend(t, "dead", 0, true)
	live := startScriptBackend(t, "live", 0, false)
	c, client, pl := retryCluster(t, 50*time.Millisecond, "", dead, live)
	start := time.Now()
	if got := mustAsk(t, client, c.ListenAddr(), "hello"); got != "live" {
		t.Fatalf("answered by %s, want live", got)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("answered after %s, before retry_timeout", d)
	}
	for i := range 5 {
		if got := mustAsk(t, client, c.ListenAddr(), "again"); got != "live" {
			t.Fatalf("request %d after the retry answered by %s", i, got)
		}
	}
	if extra := readAll(t, client, 100*time.Millisecond); len(extra) > 0 {
		t.Errorf("extra answers %q", extra)
	}
	st := c.Stats()
	if st.Retries != 1 || st.Unanswered != 1 {
		t.Errorf("retries %d unanswered %d, want 1 and 1", st.Retries, st.Unanswered)
	}
	if got := dead.received(); len(got) != 1 || string(got[0]) != "hello" {
		t.Errorf("dead server got %q, want one hello", got)
	}
	if got := live.received(); len(got) != 6 || string(got[0]) != "hello" {
		t.Errorf("live server got %q, want hello then 5 more", got)
	}
	if got := pl.events(); !slices.Equal(got, []string{"dead: requests unanswered"}) {
		t.Errorf("passive events %q", got)
	}
}

// TestUDPRetryLateAnswerDropped: a slow server's answer, after the retry
// went elsewhere, is dropped and counted; the client gets one answer,
// and the slow server's run of failures is broken (it lives).
func TestUDPRetryLateAnswerDropped(t *testing.T) {
	slow := startScriptBackend(t, "slow", 150*time.Millisecond, false)
	live := startScriptBackend(t, "live", 0, false)
	c, client, pl := retryCluster(t, 40*time.Millisecond, "", slow, live)
	if got := mustAsk(t, client, c.ListenAddr(), "q"); got != "live" {
		t.Fatalf("answered by %s, want live", got)
	}
	if extra := readAll(t, client, 400*time.Millisecond); len(extra) > 0 {
		t.Errorf("the client got a second answer: %q", extra)
	}
	if n := c.Stats().Drops[DropLateAnswer]; n != 1 {
		t.Errorf("late answers dropped: %d, want 1", n)
	}
	if got := pl.events(); !slices.Equal(got, []string{"slow: requests unanswered", "slow: ok"}) {
		t.Errorf("passive events %q", got)
	}
}

// dnsQuery is a DNS query with id for a.example.
func dnsQuery(id uint16) []byte {
	return append([]byte{byte(id >> 8), byte(id), 1, 0, 0, 1, 0, 0, 0, 0, 0, 0},
		"\x01a\x07example\x00\x00\x01\x00\x01"...)
}

// TestUDPRetryDNSQueries: a client with two queries in flight (A and
// AAAA, say) on one flow gets each answered once when its server dies,
// with its own ID; a retransmission of a query in flight is not retried
// a second time.
func TestUDPRetryDNSQueries(t *testing.T) {
	dead := startScriptBackend(t, "dead", 0, true)
	live := startScriptBackend(t, "live", 0, false)
	c, client, _ := retryCluster(t, 50*time.Millisecond, "dns", dead, live)
	for _, id := range []uint16{0x1111, 0x2222, 0x1111} { // the last: a retransmission
		if _, err := client.WriteToUDPAddrPort(dnsQuery(id), c.ListenAddr()); err != nil {
			t.Fatal(err)
		}
	}
	got := readAll(t, client, 400*time.Millisecond)
	want := []string{"live|" + string(dnsQuery(0x1111)), "live|" + string(dnsQuery(0x2222))}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("answers %q, want each query once from live", got)
	}
	if st := c.Stats(); st.Retries != 2 {
		t.Errorf("retries %d, want 2", st.Retries)
	}
	if n := len(live.received()); n != 2 {
		t.Errorf("live got %d queries, want 2", n)
	}
}

// TestUDPRetryOff: without retry_timeout and passive nothing is timed:
// a dead server's client gets no answer and nothing is re-sent.
func TestUDPRetryOff(t *testing.T) {
	dead := startScriptBackend(t, "dead", 0, true)
	live := startScriptBackend(t, "live", 0, false)
	c, client, pl := retryCluster(t, 0, "", dead, live)
	expectSilence(t, client, c.ListenAddr(), "hello")
	if st := c.Stats(); st.Retries != 0 || st.Unanswered != 0 || len(live.received()) != 0 {
		t.Errorf("retries %d unanswered %d live got %d", st.Retries, st.Unanswered, len(live.received()))
	}
	if len(pl.events()) != 0 {
		t.Errorf("passive events %q", pl.events())
	}
}

// TestUDPPassiveWithoutRetry: with passive and no retry, a request left
// unanswered for udpAnswerWait counts against the server, not re-sent.
func TestUDPPassiveWithoutRetry(t *testing.T) {
	dead := startScriptBackend(t, "dead", 0, true)
	live := startScriptBackend(t, "live", 0, false)
	vc := udpClusterConfig(&dead.udpBackend, &live.udpBackend)
	vc.Passive = &config.Passive{Fail: 3, Window: time.Second}
	pool := testPool(t, vc)
	var pl passiveLog
	pool.SetPassive(pl.fn)
	sticky := &mapSticky{m: map[netip.Addr]string{netip.MustParseAddr("127.0.0.1"): "dead"}}
	c := startUDPCluster(t, vc, pool, UDPOptions{Sticky: sticky}, nil)
	client := udpClient(t, netip.Addr{})
	expectSilence(t, client, c.ListenAddr(), "hello")
	deadline := time.Now().Add(udpAnswerWait + 2*time.Second)
	for len(pl.events()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := pl.events(); !slices.Equal(got, []string{"dead: requests unanswered"}) {
		t.Errorf("passive events %q", got)
	}
	if st := c.Stats(); st.Retries != 0 || st.Unanswered != 1 || len(live.received()) != 0 {
		t.Errorf("retries %d unanswered %d live got %d", st.Retries, st.Unanswered, len(live.received()))
	}
}

// TestUDPRetryOnPortUnreachable: a server whose port is closed answers
// with an ICMP error; the request goes to the other server at once,
// long before retry_timeout.
func TestUDPRetryOnPortUnreachable(t *testing.T) {
	live := startScriptBackend(t, "live", 0, false)
	closed := &scriptBackend{}
	closed.name, closed.addr = "closed", udpDeadAddr(t)
	c, client, pl := retryCluster(t, time.Second, "", closed, live)
	start := time.Now()
	if got := mustAsk(t, client, c.ListenAddr(), "hello"); got != "live" {
		t.Fatalf("answered by %s", got)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("answered after %s: waited for retry_timeout (1s) though the port was closed", d)
	}
	if st := c.Stats(); st.Retries != 1 {
		t.Errorf("retries %d, want 1", st.Retries)
	}
	if got := pl.events(); !slices.Equal(got, []string{"closed: requests unanswered"}) {
		t.Errorf("passive events %q", got)
	}
}

// askMany sends each of ps to the cluster from client, at once.
func askMany(t *testing.T, client *net.UDPConn, to netip.AddrPort, ps ...string) {
	t.Helper()
	for _, p := range ps {
		if _, err := client.WriteToUDPAddrPort([]byte(p), to); err != nil {
			t.Fatal(err)
		}
	}
}

// TestUDPRetryBounds: a loop times at most its ring's worth of requests
// (the rest go untimed, never retried), and a flow at most
// udpPendPerFlow (a further one forgets the oldest).
func TestUDPRetryBounds(t *testing.T) {
	t.Run("ring", func(t *testing.T) {
		dead := startScriptBackend(t, "dead", 0, true)
		live := startScriptBackend(t, "live", 0, false)
		vc := udpClusterConfig(&dead.udpBackend, &live.udpBackend)
		vc.RetryTimeout = 50 * time.Millisecond
		sticky := &mapSticky{m: map[netip.Addr]string{netip.MustParseAddr("127.0.0.1"): "dead"}}
		c := startUDPCluster(t, vc, testPool(t, vc), UDPOptions{Sticky: sticky}, func(c *UDPCluster) { c.pendRing = 4 })
		client := udpClient(t, netip.Addr{})
		askMany(t, client, c.ListenAddr(), "a", "b", "c", "d", "e", "f")
		got := readAll(t, client, 400*time.Millisecond)
		slices.Sort(got)
		if want := []string{"live|a", "live|b", "live|c", "live|d"}; !slices.Equal(got, want) {
			t.Errorf("answers %q, want %q (the first four, timed)", got, want)
		}
		// e and f found the ring full; so did three of the four re-sent
		// (sent all the same, but not timed again).
		if st := c.Stats(); st.Untimed != 5 || st.Retries != 4 {
			t.Errorf("untimed %d retries %d, want 5 and 4", st.Untimed, st.Retries)
		}
	})
	t.Run("flow", func(t *testing.T) {
		dead := startScriptBackend(t, "dead", 0, true)
		live := startScriptBackend(t, "live", 0, false)
		c, client, _ := retryCluster(t, 50*time.Millisecond, "", dead, live)
		var ps []string
		for i := range udpPendPerFlow + 2 {
			ps = append(ps, fmt.Sprint("q", i))
		}
		askMany(t, client, c.ListenAddr(), ps...)
		got := readAll(t, client, 400*time.Millisecond)
		if len(got) != udpPendPerFlow || slices.Contains(got, "live|q0") || slices.Contains(got, "live|q1") {
			t.Errorf("answers %q, want the last %d", got, udpPendPerFlow)
		}
		if st := c.Stats(); st.Retries != udpPendPerFlow {
			t.Errorf("retries %d, want %d", st.Retries, udpPendPerFlow)
		}
	})
}

// BenchmarkUDPRetryBookkeeping is what timing costs one request and its
// answer, without the sockets: the copy, the ring, the match and the
// pop, for DNS (ID) and any-datagram (content hash) matching.
func BenchmarkUDPRetryBookkeeping(b *testing.B) {
	for _, tc := range []struct {
		name  string
		match udpMatch
	}{{"dns", matchDNS}, {"any", matchAny}} {
		b.Run(tc.name, func(b *testing.B) {
			c := &UDPCluster{timed: true, retry: int64(100 * time.Millisecond), wait: int64(100 * time.Millisecond), match: tc.match}
			l := &uloop{c: c, rq: make([]upend, udpPendRing)}
			f := &uflow{srv: NewServer(0, "s", netip.MustParseAddrPort("127.0.0.1:53"), 1), fd: -1, slot: -1}
			q := dnsQuery(1)
			a := append([]byte(nil), q...)
			a[2] |= 0x80
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				q[0], q[1], a[0], a[1] = byte(i>>8), byte(i), byte(i>>8), byte(i)
				l.timeRequest(f, q)
				l.answered(f, a)
				l.now += int64(10 * time.Microsecond) // 100,000 requests a second
				l.expire()
			}
		})
	}
}
