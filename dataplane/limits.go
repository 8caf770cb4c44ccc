package dataplane

import (
	"sync/atomic"
	"time"
)

// Refusal reasons, the keys of ClusterStats.Refused.
const (
	RefusedStandby       = "standby"        // the node is not MASTER
	RefusedAllow         = "allow"          // the client is outside `allow`
	RefusedMaxConns      = "max_conns"      // the cluster is at max_conns
	RefusedNoServer      = "no_server"      // no server is available
	RefusedConnectFailed = "connect_failed" // the connect and its retry failed
)

// reason indexes the per-reason counters and log limiters.
type reason int

const (
	reasonStandby reason = iota
	reasonAllow
	reasonMaxConns
	reasonNoServer
	reasonConnectFailed
	numReasons
)

// reasonNames maps a reason to its key in ClusterStats.Refused.
var reasonNames = [numReasons]string{
	RefusedStandby, RefusedAllow, RefusedMaxConns, RefusedNoServer, RefusedConnectFailed,
}

func (r reason) String() string { return reasonNames[r] }

// logLimiter lets at most one log line through per interval and counts
// the ones it held back, so a flood of refusals (a scan, a client retrying
// in a loop, every server down) costs a counter increment each and one
// line a second. It takes no lock: the caller that moves next forward by
// compare-and-swap is the one that logs.
type logLimiter struct {
	next       atomic.Int64 // unix nanos before which lines are suppressed
	suppressed atomic.Uint64
}

// logInterval is the least time between two lines of one limiter.
const logInterval = time.Second

// allow reports whether a line may be logged at now and, if so, how many
// lines were suppressed since the last one.
func (l *logLimiter) allow(now time.Time) (ok bool, suppressed uint64) {
	n := now.UnixNano()
	next := l.next.Load()
	if n < next || !l.next.CompareAndSwap(next, n+int64(logInterval)) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}
