package main

import (
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// runNice is the nice value `tandem run` falls back to when real-time
// scheduling is off or refused.
const runNice = -15

// raisePriority makes heartbeats punctual on a saturated box. With
// rtPriority > 0 every thread of the process gets SCHED_RR at that
// priority (threads the Go runtime creates later inherit it from the
// thread that creates them); measured on the lab machines, a nice -20
// timer still overshot by ~100 ms under load where SCHED_RR stayed under
// 1 ms. The kernel's RT throttling (sched_rt_runtime_us) keeps 5% of the
// CPU for everything else. Otherwise, or when SCHED_RR is refused, it
// sets nice -15. It reports what it did.
func raisePriority(rtPriority int) (string, error) {
	tids, err := threads()
	if err != nil {
		return "", err
	}
	if rtPriority > 0 {
		attr := unix.SchedAttr{Size: uint32(unsafe.Sizeof(unix.SchedAttr{})), Policy: unix.SCHED_RR, Priority: uint32(rtPriority)}
		var rtErr error
		for _, tid := range tids {
			if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
				rtErr = err
				break
			}
		}
		if rtErr == nil {
			return fmt.Sprintf("SCHED_RR priority %d", rtPriority), nil
		}
		if msg, err := setNice(tids); err == nil {
			return msg, fmt.Errorf("SCHED_RR refused (%v); using %s", rtErr, msg)
		}
		return "", fmt.Errorf("SCHED_RR: %w", rtErr)
	}
	return setNice(tids)
}

func setNice(tids []int) (string, error) {
	for _, tid := range tids {
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, runNice); err != nil {
			return "", fmt.Errorf("setpriority %d: %w", runNice, err)
		}
	}
	return fmt.Sprintf("nice %d", runNice), nil
}

func threads() ([]int, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("list threads: %w", err)
	}
	var tids []int
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}
