package sched

import (
	"os"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Work started from a real-time thread runs at normal scheduling inside
// Normal.
func TestNormalLeavesRealTime(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for SCHED_RR")
	}
	done := make(chan [3]int, 1)
	go func() {
		// A real-time thread of the test's own (locked twice: Normal
		// locks again, and the thread is discarded when this ends).
		runtime.LockOSThread()
		attr := unix.SchedAttr{Size: uint32(unsafe.Sizeof(unix.SchedAttr{})), Policy: unix.SCHED_RR, Priority: 10}
		if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
			t.Errorf("SCHED_RR: %v", err)
			done <- [3]int{-1, -1, -1}
			return
		}
		before, _, _ := policy()
		Normal(func() {
			p, nice, err := policy()
			if err != nil {
				t.Error(err)
			}
			done <- [3]int{before, p, nice}
		})
	}()
	got := <-done
	if got[0] != unix.SCHED_RR {
		t.Fatalf("the test's thread: policy %d, want SCHED_RR", got[0])
	}
	if got[1] != unix.SCHED_NORMAL || got[2] != 0 {
		t.Errorf("inside Normal: policy %d nice %d, want SCHED_NORMAL nice 0", got[1], got[2])
	}
}
