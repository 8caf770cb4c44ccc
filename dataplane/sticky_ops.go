package dataplane

import (
	"net/netip"
	"slices"
)

// stickyBatch bounds how many entries Expire and ForgetServer delete
// under one hold of a shard's write lock, so lookups are never stalled
// for more than a few microseconds.
const stickyBatch = 256

// Flush removes every entry and returns how many there were. The
// shards' maps are replaced, so their memory is released.
func (t *StickyMap) Flush() int {
	total := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n := len(s.v4) + len(s.v6)
		s.v4 = make(map[uint32]stickyVal)
		s.v6 = make(map[stickyKey6]stickyVal)
		s.mu.Unlock()
		t.n.Add(-int64(n))
		total += n
	}
	return total
}

// Expire removes the entries that have expired at now and returns how
// many it removed. A janitor calls it every few seconds.
func (t *StickyMap) Expire(now int64) int {
	return t.removeIf(func(v stickyVal) bool { return now >= v.expires })
}

// ForgetServer removes the entries bound to server and returns how
// many it removed. Health changes do not call it (clients are
// re-balanced lazily on their next connection); operators may.
func (t *StickyMap) ForgetServer(server uint16) int {
	return t.removeIf(func(v stickyVal) bool { return v.server == server })
}

// removeIf deletes the entries for which drop is true, shard by shard:
// it finds them under the read lock, which stalls only writers, then
// deletes them in batches under the write lock, testing each again in
// case a Touch or Apply refreshed it in between.
func (t *StickyMap) removeIf(drop func(stickyVal) bool) int {
	var k4 []uint32
	var k6 []stickyKey6
	removed := 0
	for i := range t.shards {
		s := &t.shards[i]
		k4, k6 = k4[:0], k6[:0]
		s.mu.RLock()
		for k, v := range s.v4 {
			if drop(v) {
				k4 = append(k4, k)
			}
		}
		for k, v := range s.v6 {
			if drop(v) {
				k6 = append(k6, k)
			}
		}
		s.mu.RUnlock()
		for len(k4) > 0 || len(k6) > 0 {
			n := 0
			s.mu.Lock()
			for ; len(k4) > 0 && n < stickyBatch; n++ {
				k := k4[len(k4)-1]
				k4 = k4[:len(k4)-1]
				if v, ok := s.v4[k]; ok && drop(v) {
					delete(s.v4, k)
					removed++
					t.n.Add(-1)
				}
			}
			for ; len(k6) > 0 && n < stickyBatch; n++ {
				k := k6[len(k6)-1]
				k6 = k6[:len(k6)-1]
				if v, ok := s.v6[k]; ok && drop(v) {
					delete(s.v6, k)
					removed++
					t.n.Add(-1)
				}
			}
			s.mu.Unlock()
		}
	}
	return removed
}

// Range calls fn for the entries, expired ones not yet removed
// included, until fn returns false. It copies one shard at a time under
// its read lock and calls fn without holding any lock, so fn may be slow
// or call back into the table. Each entry present throughout the
// iteration is visited exactly once; entries added or removed meanwhile
// may or may not be.
func (t *StickyMap) Range(fn func(StickyEntry) bool) {
	var buf []StickyEntry
	for i := range t.shards {
		s := &t.shards[i]
		buf = buf[:0]
		s.mu.RLock()
		for k, v := range s.v4 {
			buf = append(buf, StickyEntry{Client: t.prefix4(k), Server: v.server, Expires: v.expires})
		}
		for k, v := range s.v6 {
			buf = append(buf, StickyEntry{Client: t.prefix6(k), Server: v.server, Expires: v.expires})
		}
		s.mu.RUnlock()
		for _, e := range buf {
			if !fn(e) {
				return
			}
		}
	}
}

// Top returns up to n live entries at now, the most recently refreshed
// (latest Expires) first, for the operator's view. Equal expiries are
// ordered by prefix. It keeps a heap of n entries, so its cost is one
// pass over the table.
func (t *StickyMap) Top(n int, now int64) []StickyEntry {
	if n <= 0 {
		return nil
	}
	h := make(stickyHeap, 0, min(n, 1024))
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		for k, v := range s.v4 {
			if v.expires > now && (len(h) < n || v.expires > h[0].Expires) {
				h.offer(n, StickyEntry{Client: t.prefix4(k), Server: v.server, Expires: v.expires})
			}
		}
		for k, v := range s.v6 {
			if v.expires > now && (len(h) < n || v.expires > h[0].Expires) {
				h.offer(n, StickyEntry{Client: t.prefix6(k), Server: v.server, Expires: v.expires})
			}
		}
		s.mu.RUnlock()
	}
	slices.SortFunc(h, func(a, b StickyEntry) int {
		if a.Expires != b.Expires {
			if a.Expires > b.Expires {
				return -1
			}
			return 1
		}
		return stickyComparePrefix(a.Client, b.Client)
	})
	return h
}

func stickyComparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// stickyHeap is a min-heap on Expires: h[0] is the entry Top would drop
// first.
type stickyHeap []StickyEntry

// offer adds e, dropping the earliest entry if the heap already holds n.
func (h *stickyHeap) offer(n int, e StickyEntry) {
	if len(*h) < n {
		*h = append(*h, e)
		h.up(len(*h) - 1)
		return
	}
	(*h)[0] = e
	h.down(0)
}

func (h stickyHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p].Expires <= h[i].Expires {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func (h stickyHeap) down(i int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && h[c+1].Expires < h[c].Expires {
			c++
		}
		if h[i].Expires <= h[c].Expires {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}
