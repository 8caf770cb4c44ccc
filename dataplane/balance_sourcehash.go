package dataplane

import (
	"encoding/binary"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
)

// sourceHash maps each client address to a server by weighted rendezvous
// hashing (HRW): every candidate scores hash(client, server identity) and
// the best score wins. The score depends only on the client and that one
// server, so when a server leaves the candidates only its own clients
// move (each to its runner-up), and when it returns exactly those clients
// come back. The identity is the server's Name and Addr, so it is stable
// across reloads and independent of config order.
//
// The score is -ln(u)/weight with u uniform in (0,1) from the hash: an
// exponential variate of rate weight, whose minimum over the candidates
// falls on each server with probability weight/Σweight.
type sourceHash struct {
	// ids caches each server's identity hash by Server.Index: an
	// immutable table replaced whole (copy on write) when a server not
	// seen before shows up, so picks read it without a lock.
	ids atomic.Pointer[[]serverID]
	mu  sync.Mutex // serialises table updates
}

type serverID struct {
	s *Server
	h uint64
}

func (b *sourceHash) Pick(client netip.Addr, candidates []*Server) *Server {
	c := hashAddr(client)
	var ids []serverID
	if t := b.ids.Load(); t != nil {
		ids = *t
	}
	var (
		best      *Server
		bestScore float64
		bestID    uint64
	)
	for _, s := range candidates {
		var id uint64
		if s.Index >= 0 && s.Index < len(ids) && ids[s.Index].s == s {
			id = ids[s.Index].h
		} else {
			id = b.learn(s)
		}
		score := hrwScore(c, id, serverWeight(s))
		// Exact ties are all but impossible; breaking them by identity
		// keeps the answer independent of the candidates' order.
		if best == nil || score < bestScore || (score == bestScore && id < bestID) {
			best, bestScore, bestID = s, score, id
		}
	}
	return best
}

// learn computes s's identity hash and records it in the table. It
// allocates a new table, once per server (and again after a reload
// brings new Server values).
func (b *sourceHash) learn(s *Server) uint64 {
	h := hashIdentity(s.Name, s.Addr)
	if s.Index < 0 {
		return h
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var old []serverID
	if t := b.ids.Load(); t != nil {
		old = *t
	}
	next := make([]serverID, max(len(old), s.Index+1))
	copy(next, old)
	next[s.Index] = serverID{s: s, h: h}
	b.ids.Store(&next)
	return h
}

// hrwScore is the weighted rendezvous score of a client on a server:
// lower wins.
func hrwScore(client, id uint64, w int64) float64 {
	h := mix64(mix64(client^id) + id)
	// The top 53 bits, centred in their interval: u is in (0,1), never 0.
	u := (float64(h>>11) + 0.5) * (1.0 / (1 << 53))
	return -math.Log(u) / float64(w)
}

// hashAddr hashes a client address. An IPv4-mapped IPv6 address hashes
// as the IPv4 address, so a dual-stack listener sees one client, not two.
func hashAddr(a netip.Addr) uint64 {
	b := a.Unmap().As16()
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	return mix64(mix64(hi^0x9e3779b97f4a7c15) ^ lo)
}

// hashIdentity is FNV-1a over the server's name, a separator, its
// address and port, finished with mix64 for avalanche.
func hashIdentity(name string, addr netip.AddrPort) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint64(name[i])) * prime
	}
	h = (h ^ 0) * prime
	a := addr.Addr().Unmap().As16()
	for _, c := range a {
		h = (h ^ uint64(c)) * prime
	}
	p := addr.Port()
	h = (h ^ uint64(p>>8)) * prime
	h = (h ^ uint64(p&0xff)) * prime
	return mix64(h)
}

// mix64 is the MurmurHash3 64-bit finaliser: a bijection in which every
// input bit flips each output bit with probability close to 1/2.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
