package dataplane

import (
	"net/netip"
	"sync/atomic"
)

// roundRobin hands connections to the candidates in turn. One atomic
// counter, no lock: concurrent picks each get their own turn. When the
// candidate set changes the rotation simply continues over the new set.
type roundRobin struct {
	next atomic.Uint64
}

func (b *roundRobin) Pick(_ netip.Addr, candidates []*Server) *Server {
	n := b.next.Add(1) - 1
	return candidates[n%uint64(len(candidates))]
}
