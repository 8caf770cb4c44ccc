//go:build linux

package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/dataplane"
	"github.com/tandem-lb/tandem/pkg/ctsync"
	"github.com/tandem-lb/tandem/pkg/replicate"
)

// The runs of the replication figures (flowsfig_linux_test.go), shared by
// TestNATReplicationFigures and the benchmarks.

// figSustained offers rate new flows/s for step seconds (at most 120,000
// flows) on a fresh pair and reports what B got and when.
func figSustained(t testing.TB, k, rate, step int) sustainedResult {
	n := min(rate*step, 120000)
	a, b, lt, release := figPair(t, fmt.Sprintf("s%d", k), n)
	defer release()
	res := sustainedResult{rate: rate, n: n}
	c0 := countersOf(a)
	applied0 := b.fs.applied.Load()
	start := time.Now()
	deadline := start.Add(time.Duration(2*n/rate+2) * time.Second) // bounded even if Writes are slow
	i := 0
	for i < n && time.Now().Before(deadline) {
		due := min(int(time.Since(start).Seconds()*float64(rate))+1, n)
		if i >= due {
			time.Sleep(100 * time.Microsecond)
			continue
		}
		for ; i < due; i++ {
			lt.sentAt[i].Store(time.Now().UnixNano())
			if err := a.tb.Write(figFlow(i)); err != nil {
				t.Fatalf("Write on A: %v", err)
			}
		}
	}
	res.achieved = float64(i) / time.Since(start).Seconds()
	figWait(2*time.Second, func() bool { return lt.got.Load() >= int64(i)+1 })
	res.applied = int(b.fs.applied.Load() - applied0)
	res.overflows, res.resyncs, res.discards = countersOf(a).since(c0)
	lags := lt.lags(n)
	if len(lags) > 0 {
		res.p50, res.p99, res.pmax = lags[len(lags)/2], lags[len(lags)*99/100], lags[len(lags)-1]
	}
	res.lagged = len(lags)
	res.keptUp = i == n && len(lags) == n && res.overflows == 0 && res.resyncs == 0 && res.discards == 0 &&
		res.achieved >= 0.95*float64(rate)
	if errs := b.fs.errors(); len(errs) > 0 {
		t.Logf("B's errors: %v", errs)
	}
	t.Logf("FIGURE sustained %s", res.row())
	return res
}

type bulkResult struct {
	entries    int
	wall, bulk time.Duration
}

// bulkSource is a master A holding n flows that a first peer has had
// (streamed and acknowledged), that peer gone: what a fresh peer's bulk
// comes from. la and lb are A's and the peer's addresses.
type bulkSource struct {
	a      *figSide
	n      int
	la, lb string
}

func newBulkSource(t testing.TB, n int) *bulkSource {
	t.Helper()
	ta, _ := figNS(t, "ka")
	la, lb := figFreePort(t), figFreePort(t)
	a := startSide(t, "a", ta, ta, true, la, lb, nil)
	first := &countStore{}
	b1 := startSide(t, "b1", nil, nil, false, lb, la, first)
	if !figWait(10*time.Second, func() bool { return a.rep.Status().State == replicate.StateInSync }) {
		t.Fatalf("A not IN SYNC with the first peer: %+v", a.rep.Status())
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := ta.Write(figFlow(i)); err != nil {
			t.Fatalf("Write %d on A: %v", i, err)
		}
	}
	wrote := time.Since(start)
	if !figWait(60*time.Second, func() bool { return first.n.Load() >= int64(n) && a.rep.Status().Queued == 0 }) {
		t.Fatalf("the first peer got %d of %d flows", first.n.Load(), n)
	}
	t.Logf("FIGURE %d flows written on A in %v (%.0f/s); streamed to the first peer in %v",
		n, wrote.Round(time.Millisecond), float64(n)/wrote.Seconds(), time.Since(start).Round(time.Millisecond))
	b1.stop()
	return &bulkSource{a: a, n: n, la: la, lb: lb}
}

// round starts a fresh peer (namespace tag) and waits until every entry
// is in its kernel with its binding; the peer and its namespace are gone
// when it returns.
func (s *bulkSource) round(t testing.TB, tag string) bulkResult {
	t.Helper()
	tb, release := figNS(t, tag)
	defer release() // frees B's entries before the next round
	t0 := time.Now()
	b := startSide(t, "b", tb, tb, false, s.lb, s.la, nil)
	defer b.stop()
	if !figWait(60*time.Second, func() bool { return b.fs.applied.Load() >= uint64(s.n) }) {
		t.Fatalf("%s: the fresh peer applied %d of %d flows (errors %v)", tag, b.fs.applied.Load(), s.n, b.fs.errors())
	}
	wall := time.Since(t0)
	st := b.rep.Status()
	got := 0
	if err := tb.Dump(dataplane.NATMarkBase, dataplane.NATMarkMask, func(f ctsync.Flow) bool {
		if i := figIndex(f); i >= 0 && i < s.n && f.Reply == figFlow(i).Reply {
			got++
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if got != s.n {
		t.Fatalf("%s: B's kernel holds %d of %d flows with their binding", tag, got, s.n)
	}
	t.Logf("FIGURE bulk %s: %d entries, peer start → all written %v, LastBulkDuration %v (%d entries)",
		tag, s.n, wall.Round(time.Millisecond), st.LastBulkDuration.Round(time.Millisecond), st.LastBulkEntries)
	return bulkResult{entries: s.n, wall: wall, bulk: st.LastBulkDuration}
}

func figBulk(t *testing.T, n, rounds int) []bulkResult {
	src := newBulkSource(t, n)
	var out []bulkResult
	for r := 0; r < rounds; r++ {
		out = append(out, src.round(t, fmt.Sprintf("kb%d", r)))
	}
	return out
}
