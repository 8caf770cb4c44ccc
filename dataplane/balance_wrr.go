package dataplane

import (
	"net/netip"
	"sync"
)

// weightedRoundRobin is nginx's smooth weighted round robin: on each pick
// every candidate's current weight grows by its weight, the largest wins
// and gives back the total. Weights 5,1,1 give a a b a c a a: in
// proportion, and interleaved rather than in bursts.
//
// Current weights are kept by Server.Index, not by position in the
// candidate slice, so a server that leaves the candidates (unhealthy,
// draining) keeps its value and the others' stay meaningful; when it
// returns, the sum over the pool is back to zero, as if it had never left.
type weightedRoundRobin struct {
	mu      sync.Mutex
	current []int64 // by Server.Index; grows on first sight of an index
}

func (b *weightedRoundRobin) Pick(_ netip.Addr, candidates []*Server) *Server {
	b.mu.Lock()
	defer b.mu.Unlock()
	var (
		best    *Server
		bestCur int64
		total   int64
	)
	for _, s := range candidates {
		if s.Index >= len(b.current) {
			b.grow(s.Index + 1)
		}
		w := s.EffectiveWeight() // the agent's scaling, agent.go
		total += w
		b.current[s.Index] += w
		if c := b.current[s.Index]; best == nil || c > bestCur {
			best, bestCur = s, c
		}
	}
	b.current[best.Index] -= total
	return best
}

// grow makes room for indexes below n. It allocates only when the pool
// shows a new, higher index, in practice on the first few picks.
func (b *weightedRoundRobin) grow(n int) {
	b.current = append(b.current, make([]int64, n-len(b.current))...)
}
