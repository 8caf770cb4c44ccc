package dataplane

import (
	"runtime"
	"syscall"
	"testing"
)

// stickyCPU measures the CPU time of the calling thread, so a benchmark
// can report cpu-ns/op next to ns/op: on a shared, oversubscribed
// machine the wall time also counts the time the thread waited for a
// core. Call start after b.ResetTimer and stop at the end.
type stickyCPU struct{ t0 int64 }

func (c *stickyCPU) start() {
	runtime.LockOSThread()
	c.t0 = stickyThreadCPU()
}

func (c *stickyCPU) stop(b *testing.B) {
	d := stickyThreadCPU() - c.t0
	runtime.UnlockOSThread()
	b.ReportMetric(float64(d)/float64(b.N), "cpu-ns/op")
}

func stickyThreadCPU() int64 {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
