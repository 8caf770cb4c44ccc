package main

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// runNice is the nice value `tandem run` gives itself: heartbeats must be
// sent and read on time even when the box's CPUs are saturated (a proxy
// under load, a backup job), or the pair flaps.
const runNice = -15

// raisePriority sets the nice value of every thread of the process (on
// Linux nice is per thread; threads created later inherit it from the
// thread that creates them).
func raisePriority() error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("list threads: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, runNice); err != nil {
			return fmt.Errorf("setpriority %d: %w", runNice, err)
		}
	}
	return nil
}
