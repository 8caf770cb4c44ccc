package sched

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// setNormal gives the calling thread SCHED_OTHER at nice 0.
func setNormal() error {
	attr := unix.SchedAttr{Size: uint32(unsafe.Sizeof(unix.SchedAttr{})), Policy: unix.SCHED_NORMAL}
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		return err
	}
	return unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 0)
}

// policy is the calling thread's scheduling policy and nice value.
func policy() (int, int, error) {
	attr, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		return 0, 0, err
	}
	nice, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	if err != nil {
		return 0, 0, err
	}
	// getpriority(2) returns 20 - nice
	return int(attr.Policy), 20 - nice, nil
}
