package dataplane

import (
	"fmt"
	"strings"
)

// The balancing algorithms of CONTRACT.md, as spelt in the config.
const (
	RoundRobin         = "round_robin"
	WeightedRoundRobin = "weighted_round_robin"
	LeastConn          = "least_conn"
	SourceHash         = "source_hash"
	RandomTwo          = "random_two"
	FastestResponse    = "fastest_response"
)

// NewBalancer returns a fresh balancer for the named algorithm. Some
// balancers keep per-pool state keyed by Server.Index (weighted round
// robin's current weights, source hash's identity cache), so give each
// pool its own.
func NewBalancer(algorithm string) (Balancer, error) {
	switch algorithm {
	case RoundRobin:
		return &roundRobin{}, nil
	case WeightedRoundRobin:
		return &weightedRoundRobin{}, nil
	case LeastConn:
		return &leastConn{}, nil
	case SourceHash:
		return &sourceHash{}, nil
	case RandomTwo:
		return randomTwo{}, nil
	case FastestResponse:
		return &fastestResponse{}, nil
	}
	return nil, fmt.Errorf("dataplane: unknown balancing algorithm %q (want one of %s)", algorithm,
		strings.Join([]string{RoundRobin, WeightedRoundRobin, LeastConn, SourceHash, RandomTwo, FastestResponse}, ", "))
}

// lessLoaded reports whether a is less loaded than b, weighing the
// connection each would get next: (a.Active()+1)/w(a) <
// (b.Active()+1)/w(b), w being the effective weight (the configured one
// scaled by the server's agent, agent.go), compared by
// cross-multiplication so there is no float and no division. Effective
// weights are at most 25,600 and counts fit in far fewer than 48 bits, so
// the products cannot overflow.
func lessLoaded(a, b *Server) bool {
	return nextLoad(a)*b.EffectiveWeight() < nextLoad(b)*a.EffectiveWeight()
}

// nextLoad is the active count the next connection would make. A transient
// negative count (a Release racing ahead of its Acquire) reads as zero.
func nextLoad(s *Server) int64 {
	return max(s.Active(), 0) + 1
}

// serverWeight is the server's weight, at least 1 even for a Server built
// without NewServer.
func serverWeight(s *Server) int64 {
	return int64(max(s.Weight, 1))
}
