package healthcheck

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// scriptChecker answers each server's probes from a script, one entry
// per probe, repeating the last; Detail names the probe's number.
type scriptChecker struct {
	mu     sync.Mutex
	script map[netip.AddrPort][]bool
	calls  map[netip.AddrPort]int
}

func (s *scriptChecker) Check(ctx context.Context, addr netip.AddrPort) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		panic("Monitor must pass a context with the timeout")
	}
	if s.calls == nil {
		s.calls = map[netip.AddrPort]int{}
	}
	n := s.calls[addr]
	s.calls[addr]++
	steps := s.script[addr]
	ok := steps[min(n, len(steps)-1)]
	return Result{OK: ok, Latency: time.Millisecond, Detail: fmt.Sprintf("probe %d", n+1), At: time.Now()}
}

// collect gathers Changes for the test to wait on.
type collect struct{ ch chan Change }

func (c collect) on(ch Change) { c.ch <- ch }

func (c collect) next(t *testing.T) Change {
	t.Helper()
	select {
	case ch := <-c.ch:
		return ch
	case <-time.After(5 * time.Second):
		t.Fatal("no change within 5s")
		return Change{}
	}
}

// syncBuffer is a log sink safe for the target goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMonitorRiseFall runs in a synctest bubble: the monitor's clock is
// Go's, so its intervals pass as fast as the goroutines allow, and the
// quiet spell at the end is exact.
func TestMonitorRiseFall(t *testing.T) { synctest.Test(t, testMonitorRiseFall) }

func testMonitorRiseFall(t *testing.T) {
	web1 := netip.MustParseAddrPort("127.0.0.1:1001")
	web2 := netip.MustParseAddrPort("127.0.0.1:1002")
	const o, x = true, false
	checker := &scriptChecker{script: map[netip.AddrPort][]bool{
		// up, then down after fall 3 (probe 5), back after rise 2 (probe 8)
		web1: {o, o, x, x, x, x, o, o, o},
		// dead at start: out at once, in after rise 2 (probe 3)
		web2: {x, o, o},
	}}
	hc := config.HealthCheck{Interval: 10 * time.Millisecond, Timeout: 5 * time.Millisecond, Rise: 2, Fall: 3}
	targets := []Target{{"web", "web1", web1}, {"web", "web2", web2}}
	got := collect{make(chan Change, 16)}
	var logs syncBuffer
	m := NewMonitor(checker, hc, targets, got.on, slog.New(slog.NewTextHandler(&logs, nil)))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()

	select {
	case <-m.RoundDone():
	case <-time.After(5 * time.Second):
		t.Fatal("RoundDone not closed after every target's first probe")
	}
	// Every Initial change is delivered before RoundDone closes, so
	// they are in the buffer by now.
	var seen []Change
	for len(got.ch) > 0 {
		seen = append(seen, <-got.ch)
	}
	initials := 0
	for _, ch := range seen {
		if ch.Initial {
			initials++
		}
	}
	if initials != 2 {
		t.Fatalf("at RoundDone: %d Initial changes delivered (%+v), want 2", initials, seen)
	}
	for len(seen) < 5 {
		seen = append(seen, got.next(t))
	}
	// Each target's changes in order; targets interleave freely.
	want := map[string][]string{
		"web1": {"initial true probe 1", "false probe 5", "true probe 8"},
		"web2": {"initial false probe 1", "true probe 3"},
	}
	for _, ch := range seen {
		s := fmt.Sprintf("%v %s", ch.Healthy, ch.Result.Detail)
		if ch.Initial {
			s = "initial " + s
		}
		w := want[ch.Target.Server]
		if len(w) == 0 || w[0] != s {
			t.Fatalf("%s: change %q, want %q", ch.Target.Server, s, w)
		}
		want[ch.Target.Server] = w[1:]
	}
	// Steady now: no more changes.
	select {
	case ch := <-got.ch:
		t.Fatalf("unexpected change %+v", ch)
	case <-time.After(100 * time.Millisecond):
	}

	last := m.Last()
	if len(last) != 2 || !last["web1"].OK || last["web1"].Latency != time.Millisecond {
		t.Errorf("Last() = %+v, want a passing result for both", last)
	}
	out := logs.String()
	for _, w := range []string{
		`msg="server web2 initially down: probe 1" cluster=web server=web2 err="probe 1"`,
		`msg="server web1 down: probe 5 (3 of 3 failures)" cluster=web server=web1 err="probe 5"`,
		`msg="server web1 up: probe 8 (2 of 2 successes)" cluster=web server=web1`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %s\n%s", w, out)
		}
	}
	if n := strings.Count(out, "level=INFO"); n != 4 {
		t.Errorf("%d info lines, want 4 (one per change, none for web1's healthy start)\n%s", n, out)
	}
}

// blockingChecker holds every probe until its context ends.
type blockingChecker struct{ started chan struct{} }

func (b blockingChecker) Check(ctx context.Context, _ netip.AddrPort) Result {
	select {
	case b.started <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return Result{Detail: "cut short", At: time.Now()}
}

// TestMonitorRunReturnsOnCancel runs in a synctest bubble: time moves
// only while every goroutine waits, so once Run has returned and the
// bubble is idle, every goroutine it started has returned or never will.
func TestMonitorRunReturnsOnCancel(t *testing.T) { synctest.Test(t, testMonitorRunReturnsOnCancel) }

func testMonitorRunReturnsOnCancel(t *testing.T) {
	base := runtime.NumGoroutine()
	var targets []Target
	for i := range 20 {
		targets = append(targets, Target{"c", fmt.Sprint("s", i), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(1000+i))})
	}
	b := blockingChecker{started: make(chan struct{}, 1)}
	// A long timeout: only cancelling ctx ends the probes.
	hc := config.HealthCheck{Interval: 20 * time.Millisecond, Timeout: time.Hour}
	changes := 0
	m := NewMonitor(b, hc, targets, func(Change) { changes++ }, nil)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	<-b.started // at least one probe is in flight
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
	if changes != 0 {
		t.Errorf("%d changes from probes cut short by shutdown, want 0", changes)
	}
	select {
	case <-m.RoundDone():
		t.Error("RoundDone closed although no probe completed")
	default:
	}
	// Every goroutine Run started has returned.
	synctest.Wait()
	if n := runtime.NumGoroutine(); n > base {
		t.Fatalf("%d goroutines, want at most %d as before Run", n, base)
	}
}

func TestMonitorNoTargets(t *testing.T) {
	m := NewMonitor(tcpChecker{}, config.HealthCheck{}, nil, nil, nil)
	select {
	case <-m.RoundDone():
	default:
		t.Fatal("RoundDone must be closed at once with no targets")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.Run(ctx)
}

// TestMonitorTCP watches a real server on loopback go away and come back.
func TestMonitorTCP(t *testing.T) {
	ln := listenTCP(t)
	addr := addrOf(t, ln.Addr())
	serveTCP(t, ln, func(net.Conn) {})
	hc := config.HealthCheck{Type: "tcp", Interval: 20 * time.Millisecond, Timeout: 100 * time.Millisecond, Rise: 2, Fall: 2}
	got := collect{make(chan Change, 16)}
	m := NewMonitor(mustNew(t, hc), hc, []Target{{"web", "web1", addr}}, got.on, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()

	if ch := got.next(t); !ch.Initial || !ch.Healthy {
		t.Fatalf("first change %+v, want Initial healthy", ch)
	}
	if r := m.Last()["web1"]; !r.OK || r.Latency <= 0 {
		t.Fatalf("Last()[web1] = %+v", r)
	}
	ln.Close()
	if ch := got.next(t); ch.Healthy || !strings.Contains(ch.Result.Detail, "connection refused") {
		t.Fatalf("after the server closed: %+v, want down with connection refused", ch)
	}
	ln2, err := net.Listen("tcp", addr.String())
	if err != nil {
		t.Skipf("could not listen on %s again: %v", addr, err)
	}
	t.Cleanup(func() { ln2.Close() })
	serveTCP(t, ln2, func(net.Conn) {})
	if ch := got.next(t); !ch.Healthy {
		t.Fatalf("after the server came back: %+v, want up", ch)
	}
}

// warnChecker passes with a certificate warning that changes once.
type warnChecker struct {
	mu sync.Mutex
	n  int
}

func (w *warnChecker) Check(ctx context.Context, addr netip.AddrPort) Result {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	warning := "certificate expires in 5 days"
	if w.n > 3 {
		warning = "certificate expires in 4 days"
	}
	return Result{OK: true, Latency: time.Millisecond, Detail: "TLS handshake", At: time.Now(), Warning: warning}
}

// TestMonitorLogsWarnings: a warning is logged when it first appears
// and when its text changes, not on every probe; Last keeps it.
func TestMonitorLogsWarnings(t *testing.T) {
	var logs syncBuffer
	w := &warnChecker{}
	tgt := Target{Cluster: "imaps", Server: "mail1", Addr: netip.MustParseAddrPort("127.0.0.1:993")}
	m := NewMonitor(w, config.HealthCheck{Interval: 10 * time.Millisecond, Timeout: 5 * time.Millisecond}, []Target{tgt}, nil,
		slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		n := w.n
		w.mu.Unlock()
		if n >= 6 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	got := logs.String()
	if strings.Count(got, "level=WARN") != 2 || !strings.Contains(got, "server mail1: certificate expires in 5 days") ||
		!strings.Contains(got, "server mail1: certificate expires in 4 days") || !strings.Contains(got, "cluster=imaps") {
		t.Errorf("want one warning per text, got:\n%s", got)
	}
	if r := m.Last()["mail1"]; r.Warning != "certificate expires in 4 days" {
		t.Errorf("Last().Warning = %q", r.Warning)
	}
}
