package replicate

import (
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/internal/testutil"
)

// Replication figures on loopback, for the goals:
//
//	go test -run Figures -v ./pkg/replicate/     (needs TANDEM_FIGURES=1)
//
// Every entry a figure publishes carries its Publish time (wall clock, Unix
// ns) in Expires; the peer's store records time.Now() minus that on Apply,
// so latencies are per entry, Publish → applied on the peer, both nodes
// being in this process. The stores are maps keyed by client address
// under one mutex, a stand-in for the sticky table.

func skipUnlessFigures(t *testing.T) {
	if testing.Short() || os.Getenv("TANDEM_FIGURES") != "1" {
		t.Skip("figures: set TANDEM_FIGURES=1 (and not -short) to measure")
	}
}

// figStore stands in for the sticky table: 64 shards of maps keyed by the
// IPv4 client (the figures publish IPv4 /32s only), each under its own
// mutex, keeping the newer expiry. It also records per-entry latencies.
// With TANDEM_FIGURES_STORE=count, Apply only counts, which isolates the
// replication pipeline from the table's insert cost.
type figStore struct {
	shards    [64]figShard
	countOnly bool

	mu      sync.Mutex
	lat     []int64 // ns, Publish → Apply, when recording
	record  bool
	applied int
}

type figShard struct {
	mu sync.Mutex
	m  map[uint32]figVal
	_  [48]byte
}

type figVal struct {
	cluster, server uint16
	expires         int64
}

func newFigStore(record bool) *figStore {
	s := &figStore{record: record, countOnly: os.Getenv("TANDEM_FIGURES_STORE") == "count"}
	s.clear()
	return s
}

func (s *figStore) clear() {
	for i := range s.shards {
		s.shards[i].m = map[uint32]figVal{}
	}
}

func figKey(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func (s *figStore) put(e Entry) {
	k := figKey(e.Client.Addr())
	sh := &s.shards[(k*0x9e3779b1)>>26]
	sh.mu.Lock()
	if old, ok := sh.m[k]; !ok || old.expires <= e.Expires {
		sh.m[k] = figVal{e.Cluster, e.Server, e.Expires}
	}
	sh.mu.Unlock()
}

func (s *figStore) Apply(e Entry) {
	if !s.countOnly {
		s.put(e)
	}
	s.mu.Lock()
	s.applied++
	if s.record {
		s.lat = append(s.lat, time.Now().UnixNano()-e.Expires)
	}
	s.mu.Unlock()
}

func (s *figStore) Snapshot(fn func(Entry) bool) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, v := range sh.m {
			a := netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)})
			if !fn(Entry{Cluster: v.cluster, Client: netip.PrefixFrom(a, 32), Server: v.server, Expires: v.expires}) {
				sh.mu.Unlock()
				return
			}
		}
		sh.mu.Unlock()
	}
}

func (s *figStore) count() int { s.mu.Lock(); defer s.mu.Unlock(); return s.applied }

// reset forgets what was applied and recorded.
func (s *figStore) reset() {
	s.clear()
	s.mu.Lock()
	s.lat, s.applied = nil, 0
	s.mu.Unlock()
}

func (s *figStore) percentiles() (p50, p99, max time.Duration) {
	s.mu.Lock()
	l := slices.Clone(s.lat)
	s.mu.Unlock()
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	at := func(q float64) time.Duration { return time.Duration(l[int(q*float64(len(l)-1))]) }
	return at(0.50), at(0.99), time.Duration(l[len(l)-1])
}

// figEntry is a distinct IPv4 client for every i < 2^28.
func figEntry(i int, expires int64) Entry {
	a := netip.AddrFrom4([4]byte{10 + byte(i>>24), byte(i >> 16), byte(i >> 8), byte(i)})
	return Entry{Cluster: uint16(i % 4), Client: netip.PrefixFrom(a, 32), Server: uint16(i % 16), Expires: expires}
}

// figPair starts A (publisher) and B (recording) and waits until in sync.
func figPair(t *testing.T, sa, sb Store) (*node, *node) {
	la, lb := listen(t), listen(t)
	a := newNode(t, "lb1", la, lb.Addr().String(), sa, nil)
	b := newNode(t, "lb2", lb, la.Addr().String(), sb, nil)
	a.r.backoffMax, b.r.backoffMax = 20*time.Millisecond, 20*time.Millisecond
	return a, b
}

// pace publishes total entries on r at rate per second, in bursts every
// 200µs; it returns the achieved publish rate.
func pace(r *Replicator, first, total, rate int) float64 {
	start := time.Now()
	for i := 0; i < total; {
		due := min(total, int(float64(rate)*time.Since(start).Seconds())+1)
		for ; i < due; i++ {
			r.Publish(figEntry(first+i, time.Now().UnixNano()))
		}
		time.Sleep(200 * time.Microsecond)
	}
	return float64(total) / time.Since(start).Seconds()
}

// sustainedGoal is the goal for new entries replicated per second.
const sustainedGoal = 500_000

// TestFiguresThroughput offers rising rates for a second each and fails
// when the peer did not keep up with sustainedGoal.
func TestFiguresThroughput(t *testing.T) {
	skipUnlessFigures(t)
	sa, sb := newFigStore(false), newFigStore(true)
	a, b := figPair(t, sa, sb)
	a.start(t)
	b.start(t)
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))

	next, sustained := 0, 0
	for _, rate := range []int{250_000, 500_000, 1_000_000, 1_500_000, 2_000_000} {
		sb.reset()
		before := a.r.Status()
		total := rate // one second's worth
		start := time.Now()
		achieved := pace(a.r, next, total, rate)
		next += total
		ok := true
		deadline := time.Now().Add(10 * time.Second)
		for sb.count() < total && time.Now().Before(deadline) {
			if a.r.Status().Resyncs != before.Resyncs {
				ok = false
				break
			}
			time.Sleep(time.Millisecond)
		}
		took := time.Since(start)
		after := a.r.Status()
		p50, p99, mx := sb.percentiles()
		lost := after.Dropped[dropQueue] - before.Dropped[dropQueue]
		ok = ok && lost == 0 && sb.count() == total
		t.Logf("FIGURE throughput offered %9d/s published %9.0f/s delivered %9.0f/s in %v: p50 %v p99 %v max %v, discarded %d, kept up: %v",
			rate, achieved, float64(sb.count())/took.Seconds(), took.Round(time.Millisecond),
			p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), mx.Round(10*time.Microsecond), lost, ok)
		if ok {
			sustained = max(sustained, rate)
		}
		if !ok {
			testutil.WaitWithin(t, 10*time.Second, "IN SYNC after overload", inSync(a, b))
		}
	}
	if sustained < sustainedGoal {
		t.Errorf("kept up with %d new entries/s at most, want ≥ %d", sustained, sustainedGoal)
	}
}

// TestFiguresCapacity publishes as fast as the stream drains (holding back
// while more than half the queue is waiting): the pipeline's ceiling,
// which fails below sustainedGoal (the goal could not be met).
func TestFiguresCapacity(t *testing.T) {
	skipUnlessFigures(t)
	sa, sb := newFigStore(false), newFigStore(false)
	a, b := figPair(t, sa, sb)
	a.start(t)
	b.start(t)
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))
	const total = 3_000_000
	start := time.Now()
	for i := 0; i < total; i++ {
		if i%1024 == 0 {
			for a.r.Status().Queued > DefaultQueueLen/2 {
				time.Sleep(100 * time.Microsecond)
			}
		}
		a.r.Publish(figEntry(i, 1))
	}
	testutil.WaitWithin(t, 30*time.Second, "all applied", func() bool { return sb.count() >= total })
	took := time.Since(start)
	st := a.r.Status()
	t.Logf("FIGURE capacity %d new entries in %v = %.0f entries/s (discarded %d, resyncs %d)",
		total, took.Round(time.Millisecond), total/took.Seconds(), st.Dropped[dropQueue], st.Resyncs)
	if rate := total / took.Seconds(); rate < sustainedGoal {
		t.Errorf("capacity %.0f entries/s, want ≥ %d", rate, sustainedGoal)
	}
}

func TestFiguresLag(t *testing.T) {
	skipUnlessFigures(t)
	sa, sb := newFigStore(false), newFigStore(true)
	a, b := figPair(t, sa, sb)
	a.start(t)
	b.start(t)
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))
	const rate, secs = 20_000, 5
	pace(a.r, 0, rate*secs, rate)
	testutil.WaitFor(t, "all applied", func() bool { return sb.count() >= rate*secs })
	p50, p99, mx := sb.percentiles()
	t.Logf("FIGURE lag at %d new entries/s for %ds, Publish → applied on the peer: p50 %v p99 %v max %v; Status.LagMs (Publish → ack, last batch) %.2f",
		rate, secs, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), mx.Round(10*time.Microsecond), a.r.Status().LagMs)
	if p99 > 100*time.Millisecond {
		t.Errorf("lag p99 %v > 100ms", p99)
	}
}

func TestFiguresBulk(t *testing.T) {
	skipUnlessFigures(t)
	const n = 1_000_000
	sa := newFigStore(false)
	for i := range n {
		sa.put(figEntry(i, 1767225600e9+int64(i)*1000))
	}
	var runs []time.Duration
	for run := range 3 {
		sb := newFigStore(false)
		a, b := figPair(t, sa, sb)
		a.r.backoffMin, a.r.backoffMax = time.Millisecond, 2*time.Millisecond
		a.start(t)
		time.Sleep(20 * time.Millisecond)
		start := time.Now()
		b.start(t)
		select {
		case <-b.r.BulkReceived():
		case <-time.After(20 * time.Second):
			t.Fatal("no bulk")
		}
		wall := time.Since(start)
		st := b.r.Status()
		if sb.count() != n || st.LastBulkEntries != n {
			t.Fatalf("bulk applied %d entries, status %d, want %d", sb.count(), st.LastBulkEntries, n)
		}
		runs = append(runs, st.LastBulkDuration)
		t.Logf("FIGURE bulk run %d: %d entries, connected → all applied %v (%.2fM entries/s), peer start → BulkReceived %v",
			run, n, st.LastBulkDuration.Round(time.Millisecond), n/st.LastBulkDuration.Seconds()/1e6, wall.Round(time.Millisecond))
		a.stop()
		b.stop()
	}
	slices.Sort(runs)
	t.Logf("FIGURE bulk of %d entries: median %v", n, runs[len(runs)/2].Round(time.Millisecond))
	if runs[len(runs)/2] > 500*time.Millisecond {
		t.Errorf("bulk median %v > 500ms", runs[len(runs)/2])
	}
}

// BenchmarkPublish is the accept path's cost of replication.
func BenchmarkPublish(b *testing.B) {
	r, err := New(Config{Node: "lb1", Listen: "127.0.0.1:1", Peer: "127.0.0.1:2", Key: testKey}, newStore(false))
	if err != nil {
		b.Fatal(err)
	}
	r.resync = false
	e := figEntry(1, 1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Publish(e)
			if i++; i%4096 == 0 {
				r.qmu.Lock()
				r.queue, r.stamps = r.queue[:0], r.stamps[:0]
				r.qmu.Unlock()
			}
		}
	})
}
