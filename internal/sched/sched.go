// Package sched runs the node's bulk work at normal scheduling.
//
// `tandem run` gives every thread real-time scheduling (SCHED_RR,
// node.rt_priority) so heartbeats and take-overs stay punctual on a
// saturated box. Bulk work in the same process then runs real-time too:
// writing a peer's thousand conntrack entries, dumping the table for a
// bulk, reading thousands of events a second. Measured in the lab, such a
// burst held a CPU for 50–100 ms ahead of every normal task, and 125 of
// 200 sessions forwarded by the master stalled while the backup merely
// restarted: the clients, the servers and the kernel's own ksoftirqd
// (which forwards packets once softirq load is high) are normal tasks.
// Normal runs such work on a thread of its own at normal scheduling, so
// only the work that must be punctual stays ahead of the box's traffic.
package sched

import "runtime"

// Normal runs fn on an OS thread of its own at normal scheduling
// (SCHED_OTHER, nice 0), whatever the process's. The thread is locked to
// the calling goroutine and never unlocked, so the runtime discards it
// when the goroutine ends instead of reusing a thread whose scheduling
// was changed. Goroutines fn starts run on the runtime's other threads
// (real-time in `tandem run`): each that does bulk work calls Normal
// itself. If the scheduling cannot be changed, fn runs anyway.
func Normal(fn func()) {
	runtime.LockOSThread()
	_ = setNormal()
	fn()
}
