package vip

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeOps is an interface's address list in memory.
type fakeOps struct {
	mu     sync.Mutex
	addrs  map[netip.Prefix]bool
	addErr map[netip.Prefix]error
	dels   map[netip.Prefix]int
}

func newFakeOps(present ...netip.Prefix) *fakeOps {
	f := &fakeOps{addrs: map[netip.Prefix]bool{}, addErr: map[netip.Prefix]error{}}
	for _, p := range present {
		f.addrs[p] = true
	}
	return f
}

func (f *fakeOps) List() ([]netip.Prefix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Prefix
	for p := range f.addrs {
		out = append(out, p)
	}
	return out, nil
}

func (f *fakeOps) Add(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.addErr[p]; err != nil {
		return err
	}
	f.addrs[p] = true
	return nil
}

func (f *fakeOps) Del(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.addrs, p)
	if f.dels == nil {
		f.dels = map[netip.Prefix]int{}
	}
	f.dels[p]++
	return nil
}

func (f *fakeOps) delCount(p netip.Prefix) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dels[p]
}

func (f *fakeOps) has(p netip.Prefix) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addrs[p]
}

// fakeAnnouncer records when each address was announced.
type fakeAnnouncer struct {
	mu     sync.Mutex
	sent   map[netip.Addr][]time.Time
	closed bool
}

func newFakeAnnouncer() *fakeAnnouncer {
	return &fakeAnnouncer{sent: map[netip.Addr][]time.Time{}}
}

func (a *fakeAnnouncer) Announce(ip netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sent[ip] = append(a.sent[ip], time.Now())
	return nil
}

func (a *fakeAnnouncer) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	return nil
}

func (a *fakeAnnouncer) times(ip netip.Addr) []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.sent[ip])
}

func (a *fakeAnnouncer) count(ip netip.Addr) int { return len(a.times(ip)) }

var (
	v4 = netip.MustParsePrefix("198.18.0.100/24")
	v6 = netip.MustParsePrefix("2001:db8::100/64")
)

func newTest(t *testing.T, g GARP, ops *fakeOps) (*Manager, *fakeAnnouncer) {
	t.Helper()
	ann := newFakeAnnouncer()
	m, err := newManager("eth0", []netip.Prefix{v4, v6}, g, nil, ops, ann)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, ann
}

// after lets Go's clock, inside a synctest bubble, run d on and waits
// until every goroutine of the bubble is blocked again: what the
// background rounds were to do by then is done.
func after(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func TestClaimAddsAllAndBursts(t *testing.T) { synctest.Test(t, testClaimAddsAllAndBursts) }

func testClaimAddsAllAndBursts(t *testing.T) {
	const interval = 25 * time.Millisecond
	ops := newFakeOps()
	m, ann := newTest(t, GARP{Count: 3, Interval: interval}, ops)

	if err := m.Claim(context.Background()); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	for _, p := range []netip.Prefix{v4, v6} {
		if !ops.has(p) {
			t.Errorf("%v not added", p)
		}
		if n := ann.count(p.Addr()); n != 1 {
			t.Errorf("%v announced %d times when Claim returned, want 1 (synchronous first round)", p, n)
		}
	}
	after(10 * interval)
	for _, p := range []netip.Prefix{v4, v6} {
		ts := ann.times(p.Addr())
		if len(ts) != 3 {
			t.Fatalf("%v announced %d times, want Count=3", p, len(ts))
		}
		for i := 1; i < len(ts); i++ {
			if gap := ts[i].Sub(ts[i-1]); gap != interval {
				t.Errorf("%v rounds %d and %d %v apart, want %v", p, i-1, i, gap, interval)
			}
		}
	}
	st := m.Stats()
	if st.Claims != 1 || st.GARPsSent != 3 || st.NAsSent != 3 || st.Errors != 0 {
		t.Errorf("Stats = %+v, want 1 claim, 3 GARPs, 3 NAs, no errors", st)
	}
}

func TestClaimIdempotent(t *testing.T) {
	ops := newFakeOps(v4) // left over, already present
	m, ann := newTest(t, GARP{Count: 1}, ops)
	for i := range 2 {
		if err := m.Claim(context.Background()); err != nil {
			t.Fatalf("Claim #%d: %v", i+1, err)
		}
	}
	if !ops.has(v4) || !ops.has(v6) {
		t.Errorf("VIPs missing after double Claim: %v", ops.addrs)
	}
	if got := m.Stats().Claims; got != 1 {
		t.Errorf("Claims = %d, want 1 (second Claim changes nothing)", got)
	}
	if n := ann.count(v4.Addr()); n != 2 {
		t.Errorf("announced %d times, want one per Claim", n)
	}
	held := m.Held()
	want := []Held{{v4, "eth0", true}, {v6, "eth0", true}}
	if !slices.Equal(held, want) {
		t.Errorf("Held = %v, want %v", held, want)
	}
}

func TestReleaseRemovesAndStopsBurst(t *testing.T) { synctest.Test(t, testReleaseRemovesAndStopsBurst) }

func testReleaseRemovesAndStopsBurst(t *testing.T) {
	ops := newFakeOps()
	m, ann := newTest(t, GARP{Count: 1000, Interval: 5 * time.Millisecond}, ops)
	if err := m.Claim(context.Background()); err != nil {
		t.Fatal(err)
	}
	after(7 * time.Millisecond)
	if n := ann.count(v4.Addr()); n != 2 {
		t.Fatalf("%d rounds after 7ms of a 5ms burst, want 2", n)
	}
	if err := m.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if ops.has(v4) || ops.has(v6) {
		t.Errorf("VIPs still present after Release: %v", ops.addrs)
	}
	n := ann.count(v4.Addr())
	after(time.Second)
	if got := ann.count(v4.Addr()); got != n {
		t.Errorf("%d announcements after Release, want none", got-n)
	}
	if err := m.Release(); err != nil {
		t.Errorf("second Release (VIPs absent): %v", err)
	}
	if st := m.Stats(); st.Releases != 1 {
		t.Errorf("Releases = %d, want 1", st.Releases)
	}
	for _, h := range m.Held() {
		if h.Present {
			t.Errorf("Held reports %v present after Release", h.Prefix)
		}
	}
	if err := m.Announce(context.Background()); !errors.Is(err, ErrNotClaimed) {
		t.Errorf("Announce after Release = %v, want ErrNotClaimed", err)
	}
}

func TestContextEndsBurst(t *testing.T) { synctest.Test(t, testContextEndsBurst) }

func testContextEndsBurst(t *testing.T) {
	ops := newFakeOps()
	m, ann := newTest(t, GARP{Count: 1000, Interval: 5 * time.Millisecond}, ops)
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Claim(ctx); err != nil {
		t.Fatal(err)
	}
	after(12 * time.Millisecond)
	cancel()
	n := ann.count(v4.Addr())
	if n != 3 {
		t.Fatalf("%d rounds after 12ms of a 5ms burst, want 3", n)
	}
	after(time.Second)
	if got := ann.count(v4.Addr()); got != n {
		t.Errorf("%d announcements after ctx ended, want none", got-n)
	}
	if !ops.has(v4) {
		t.Error("ending ctx must not release the VIPs")
	}
}

func TestReconcileReaddsDeleted(t *testing.T) {
	ops := newFakeOps()
	m, ann := newTest(t, GARP{Count: 1}, ops)
	ctx := context.Background()

	if got, err := m.Reconcile(ctx); err != nil || got != nil {
		t.Fatalf("Reconcile before Claim = %v, %v; want nothing", got, err)
	}
	if ops.has(v4) {
		t.Fatal("Reconcile added a VIP while not claimed")
	}
	if err := m.Claim(ctx); err != nil {
		t.Fatal(err)
	}
	ops.Del(v6) // someone runs "ip addr del"
	before := ann.count(v6.Addr())

	got, err := m.Reconcile(ctx)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if !slices.Equal(got, []netip.Prefix{v6}) {
		t.Errorf("Reconcile returned %v, want [%v]", got, v6)
	}
	if !ops.has(v6) {
		t.Error("deleted VIP not re-added")
	}
	if ann.count(v6.Addr()) != before+1 {
		t.Error("re-added VIP not announced")
	}
	if ann.count(v4.Addr()) != 1 {
		t.Error("untouched VIP announced again")
	}
	if st := m.Stats(); st.Readded != 1 {
		t.Errorf("Readded = %d, want 1", st.Readded)
	}
	if got, err := m.Reconcile(ctx); err != nil || len(got) != 0 {
		t.Errorf("second Reconcile = %v, %v; want nothing", got, err)
	}
}

func TestRefreshReannounces(t *testing.T) { synctest.Test(t, testRefreshReannounces) }

func testRefreshReannounces(t *testing.T) {
	ops := newFakeOps()
	m, ann := newTest(t, GARP{Count: 1, Refresh: 10 * time.Millisecond}, ops)
	if err := m.Claim(context.Background()); err != nil {
		t.Fatal(err)
	}
	after(35 * time.Millisecond)
	if a, b := ann.count(v4.Addr()), ann.count(v6.Addr()); a != 4 || b != 4 {
		t.Fatalf("after 35ms with a 10ms refresh: %d and %d rounds, want 4 (the claim, then 10, 20, 30ms)", a, b)
	}
	if err := m.Release(); err != nil {
		t.Fatal(err)
	}
	n := ann.count(v4.Addr())
	after(time.Second)
	if ann.count(v4.Addr()) != n {
		t.Error("refresh continued after Release")
	}
}

func TestAnnounceSendsBurst(t *testing.T) { synctest.Test(t, testAnnounceSendsBurst) }

func testAnnounceSendsBurst(t *testing.T) {
	ops := newFakeOps()
	m, ann := newTest(t, GARP{Count: 2, Interval: 5 * time.Millisecond}, ops)
	if err := m.Claim(context.Background()); err != nil {
		t.Fatal(err)
	}
	after(time.Second)
	if n := ann.count(v4.Addr()); n != 2 {
		t.Fatalf("claim burst: %d rounds, want Count=2", n)
	}
	if err := m.Announce(context.Background()); err != nil {
		t.Fatal(err)
	}
	after(time.Second)
	if n := ann.count(v4.Addr()); n != 4 {
		t.Fatalf("after a second burst: %d rounds, want 4", n)
	}
}

func TestClaimReportsFailuresAndContinues(t *testing.T) {
	ops := newFakeOps()
	boom := errors.New("boom")
	ops.addErr[v4] = boom
	m, _ := newTest(t, GARP{Count: 1}, ops)
	err := m.Claim(context.Background())
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), v4.String()) {
		t.Errorf("Claim = %v, want wrapped boom naming %v", err, v4)
	}
	if !ops.has(v6) {
		t.Error("one failing VIP stopped the others")
	}
	if m.Stats().Errors == 0 {
		t.Error("error not counted")
	}
}

func TestCleanupLogsLeftovers(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	ops := newFakeOps(v4)
	m, err := newManager("eth0", []netip.Prefix{v4, v6}, GARP{}, log, ops, newFakeAnnouncer())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if ops.has(v4) {
		t.Error("leftover VIP not removed")
	}
	out := buf.String()
	if !strings.Contains(out, "vip="+v4.String()) || strings.Contains(out, "vip="+v6.String()) {
		t.Errorf("log should name only the VIP that was there:\n%s", out)
	}
}

func TestClose(t *testing.T) { synctest.Test(t, testClose) }

func testClose(t *testing.T) {
	ops := newFakeOps()
	m, ann := newTest(t, GARP{Count: 1000, Interval: 5 * time.Millisecond}, ops)
	if err := m.Claim(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	n := ann.count(v4.Addr())
	after(time.Second)
	if ann.count(v4.Addr()) != n || !ann.closed {
		t.Error("Close did not stop announcing and close the announcer")
	}
	if err := m.Claim(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Claim after Close = %v, want ErrClosed", err)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := newManager("", nil, GARP{}, nil, newFakeOps(), newFakeAnnouncer()); err == nil {
		t.Error("empty interface accepted")
	}
	if _, err := newManager("eth0", []netip.Prefix{{}}, GARP{}, nil, newFakeOps(), newFakeAnnouncer()); err == nil {
		t.Error("invalid prefix accepted")
	}
	m, err := newManager("eth0", []netip.Prefix{v4, v4}, GARP{}, nil, newFakeOps(), newFakeAnnouncer())
	if err != nil || len(m.vips) != 1 || m.garp.Count != 1 {
		t.Errorf("duplicates not folded or Count not defaulted: %v %v", m, err)
	}
}

// TestSetVIPsWhileClaimed swaps one VIP for another while claimed: the
// new one is added and announced, the removed one deleted, and the one
// that stays is never deleted (no gap).
func TestSetVIPsWhileClaimed(t *testing.T) { synctest.Test(t, testSetVIPsWhileClaimed) }

func testSetVIPsWhileClaimed(t *testing.T) {
	ops := newFakeOps()
	m, ann := newTest(t, GARP{Count: 2, Interval: 5 * time.Millisecond}, ops)
	if err := m.Claim(context.Background()); err != nil {
		t.Fatal(err)
	}
	after(time.Second)
	if n := ann.count(v4.Addr()); n != 2 {
		t.Fatalf("claim burst: %d rounds, want 2", n)
	}
	v4b := netip.MustParsePrefix("198.18.0.101/24")
	dels := ops.delCount(v4)
	if err := m.SetVIPs(context.Background(), []netip.Prefix{v4, v4b}, GARP{Count: 3, Interval: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if !ops.has(v4) || !ops.has(v4b) || ops.has(v6) {
		t.Fatalf("after SetVIPs: v4 %v, v4b %v, v6 %v; want true, true, false", ops.has(v4), ops.has(v4b), ops.has(v6))
	}
	if ops.delCount(v4) != dels {
		t.Error("a VIP that stays was deleted")
	}
	after(time.Second)
	if n := ann.count(v4b.Addr()); n != 3 {
		t.Fatalf("new VIP: %d rounds, want its burst of 3", n)
	}
	if n := ann.count(v4.Addr()); n != 2 {
		t.Errorf("the VIP that stays was announced %d times, want 2 (untouched)", n)
	}
	if held := m.Held(); len(held) != 2 {
		t.Errorf("Held = %v, want 2 VIPs", held)
	}
	// Released: lists change only.
	if err := m.Release(); err != nil {
		t.Fatal(err)
	}
	if err := m.SetVIPs(context.Background(), []netip.Prefix{v6}, GARP{}); err != nil {
		t.Fatal(err)
	}
	if ops.has(v6) {
		t.Error("SetVIPs while released added a VIP")
	}
}

// failingAnnouncer fails every announcement with err.
type failingAnnouncer struct{ err error }

func (a failingAnnouncer) Announce(netip.Addr) error { return a.err }
func (a failingAnnouncer) Close() error              { return nil }

// TestAnnounceFailureLoggedOnce: a master alone announces every second;
// the same failure is logged once (then once a minute), every one counted.
func TestAnnounceFailureLoggedOnce(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	ann := &failingAnnouncer{err: errors.New("lo has no Ethernet address")}
	m, err := newManager("lo", []netip.Prefix{v4}, GARP{}, log, newFakeOps(), ann)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		m.round(context.Background(), []netip.Prefix{v4})
	}
	if n := strings.Count(buf.String(), "announcing VIP failed"); n != 1 {
		t.Errorf("5 identical failures logged %d times, want 1:\n%s", n, buf.String())
	}
	if m.Stats().Errors != 5 {
		t.Errorf("errors counted %d, want 5", m.Stats().Errors)
	}
	ann.err = errors.New("another failure")
	m.round(context.Background(), []netip.Prefix{v4})
	if n := strings.Count(buf.String(), "announcing VIP failed"); n != 2 {
		t.Errorf("a different failure was not logged at once:\n%s", buf.String())
	}
}
