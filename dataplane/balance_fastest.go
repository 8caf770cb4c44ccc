package dataplane

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// fastestResponse sends the connection to the server that has been
// quickest to accept connections: the lowest ConnectTime EWMA. A server
// with no sample yet comes first, so every server gets measured (and a
// server that returns to the pool with a fresh Server is measured again).
// Ties, common among unmeasured servers, go to the fewer Active, then
// rotate like least_conn's.
type fastestResponse struct {
	start atomic.Uint64
}

func (b *fastestResponse) Pick(_ netip.Addr, candidates []*Server) *Server {
	n := len(candidates)
	off := int(b.start.Add(1) % uint64(n))
	best := candidates[off]
	bestT := best.ConnectTime()
	for i := 1; i < n; i++ {
		j := off + i
		if j >= n {
			j -= n
		}
		s := candidates[j]
		t := s.ConnectTime()
		if faster(t, bestT) || (t == bestT && s.Active() < best.Active()) {
			best, bestT = s, t
		}
	}
	return best
}

// faster orders connect times with 0 (not measured yet) first.
func faster(a, b time.Duration) bool {
	switch {
	case a == b:
		return false
	case a == 0:
		return true
	case b == 0:
		return false
	}
	return a < b
}
