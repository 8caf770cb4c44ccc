//go:build linux

package node

import (
	"testing"
	"time"
)

// BenchmarkNATReplicationStream writes b.N new flows into A as fast as
// ctsync.Write goes (no pacing) and stops the clock when the last is in
// B's kernel: entries/s is the pipeline's ceiling with the writer's, and
// the lag percentiles are those of a saturated stream (queueing included).
// Overflows and resyncs are reported, not failed on: past the event
// socket's buffer the kernel drops events and the bulk repairs the peer.
//
//	go test -run '^$' -bench NATReplicationStream -benchtime 50000x ./cmd/tandem/node/
func BenchmarkNATReplicationStream(b *testing.B) {
	figSkip(b)
	n := b.N
	a, peer, lt, release := figPair(b, "bs", n)
	defer release()
	c0 := countersOf(a)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < n; i++ {
		lt.sentAt[i].Store(time.Now().UnixNano())
		if err := a.tb.Write(figFlow(i)); err != nil {
			b.Fatalf("Write on A: %v", err)
		}
	}
	patience := 10*time.Second + time.Duration(n)*100*time.Microsecond
	if !figWait(patience, func() bool { return lt.got.Load() >= int64(n)+1 }) {
		b.Fatalf("B has %d of %d flows after %v (errors %v)", lt.got.Load()-1, n, patience, peer.fs.errors())
	}
	took := time.Since(start)
	b.StopTimer()
	overflows, resyncs, _ := countersOf(a).since(c0)
	lags := lt.lags(n)
	b.ReportMetric(float64(n)/took.Seconds(), "entries/s")
	if len(lags) > 0 {
		b.ReportMetric(float64(lags[len(lags)*99/100])/1e6, "lag-p99-ms")
		b.ReportMetric(float64(lags[len(lags)/2])/1e6, "lag-p50-ms")
	}
	b.ReportMetric(float64(overflows+resyncs), "overflows+resyncs")
}

// BenchmarkNATReplicationBulk is the bulk of TANDEM_FIGURES_BULK [100000]
// entries to a fresh peer, one per iteration (A is filled once, outside
// the clock): bulk-s is peer start → every entry in its kernel.
//
//	go test -run '^$' -bench NATReplicationBulk -benchtime 3x ./cmd/tandem/node/
func BenchmarkNATReplicationBulk(b *testing.B) {
	figSkip(b)
	n := figEnvInts(b, "TANDEM_FIGURES_BULK", []int{100000})[0]
	src := newBulkSource(b, n)
	var total time.Duration
	rounds := 0
	for b.Loop() {
		total += src.round(b, "kbb").wall
		rounds++
	}
	mean := total / time.Duration(rounds)
	b.ReportMetric(mean.Seconds(), "bulk-s")
	b.ReportMetric(float64(n)/mean.Seconds(), "entries/s")
}
