package dataplane

import (
	"math/rand/v2"
	"net/netip"
)

// randomTwo is the power of two choices: draw two distinct candidates at
// random and take the less loaded, weighted as in least_conn. It needs no
// shared state, so picks on many cores never contend, yet it keeps load
// close to least_conn's. The draws are distinct, so a server strictly
// busier (weighted) than all others is never picked.
type randomTwo struct{}

func (randomTwo) Pick(_ netip.Addr, candidates []*Server) *Server {
	n := len(candidates)
	if n == 1 {
		return candidates[0]
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	a, b := candidates[i], candidates[j]
	if lessLoaded(b, a) {
		return b
	}
	return a
}
