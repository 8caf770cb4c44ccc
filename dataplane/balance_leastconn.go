package dataplane

import (
	"net/netip"
	"sync/atomic"
)

// leastConn sends the connection where it would weigh least: the lowest
// (Active()+1)/Weight. The scan starts at a rotating offset and only a
// strictly lighter server displaces the current choice, so servers that
// tie (idle ones, typically) take turns instead of the first in config
// order taking every burst.
type leastConn struct {
	start atomic.Uint64
}

func (b *leastConn) Pick(_ netip.Addr, candidates []*Server) *Server {
	n := len(candidates)
	off := int(b.start.Add(1) % uint64(n))
	best := candidates[off]
	for i := 1; i < n; i++ {
		j := off + i
		if j >= n {
			j -= n
		}
		if s := candidates[j]; lessLoaded(s, best) {
			best = s
		}
	}
	return best
}
