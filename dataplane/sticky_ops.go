package dataplane

import (
	"net/netip"
	"slices"
)

// stickyFewDeletes is how many entries a removal pass deletes one by one
// in a shard; above it the shard's tables are rebuilt without them and
// swapped in, which readers never wait for.
const stickyFewDeletes = 32

// Flush removes every entry and returns how many there were. The
// shards' tables are dropped, so their memory is released.
func (t *StickyMap) Flush() int {
	total := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n := s.n4 + s.n6
		s.t4.Store(nil)
		s.t6.Store(nil)
		s.n4, s.n6 = 0, 0
		s.mu.Unlock()
		t.n.Add(-int64(n))
		total += n
	}
	return total
}

// Expire removes the entries that have expired at now and returns how
// many it removed. A janitor calls it every few seconds.
func (t *StickyMap) Expire(now int64) int {
	return t.removeIf(func(_ uint16, exp int64) bool { return now >= exp })
}

// ForgetServer removes the entries bound to server and returns how
// many it removed. Health changes do not call it (clients are
// re-balanced lazily on their next connection); operators may.
func (t *StickyMap) ForgetServer(server uint16) int {
	return t.removeIf(func(srv uint16, _ int64) bool { return srv == server })
}

// removeIf deletes the entries for which drop is true, one shard at a
// time under its mutex, which stalls only that shard's writers. A few
// are deleted in place; more, and the shard's table is rebuilt without
// them (and shrunk if it became mostly empty), then swapped in.
func (t *StickyMap) removeIf(drop func(server uint16, exp int64) bool) int {
	removed := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		removed += t.remove4(s, drop) + t.remove6(s, drop)
		s.mu.Unlock()
	}
	t.n.Add(-int64(removed))
	return removed
}

func (t *StickyMap) remove4(s *stickyShard, drop func(uint16, int64) bool) int {
	tab := s.t4.Load()
	if tab == nil {
		return 0
	}
	n := 0
	for i := range tab.slots {
		if w := tab.slots[i].kv.Load(); w != 0 && drop(uint16(w>>16), tab.slots[i].exp.Load()) {
			n++
		}
	}
	switch {
	case n == 0:
	case n <= stickyFewDeletes && s.n4-n >= len(tab.slots)/8:
		for i := uint64(0); i <= tab.mask; i++ {
			// Deleting shifts later entries back into i: look at i again.
			for w := tab.slots[i].kv.Load(); w != 0 && drop(uint16(w>>16), tab.slots[i].exp.Load()); w = tab.slots[i].kv.Load() {
				s.seq.Add(1)
				tab.del(i, t.hash4)
				s.seq.Add(1)
			}
		}
	default:
		nt, kept := tab.rebuild(stickySlotsFor(s.n4-n), t.hash4, drop)
		n = s.n4 - kept
		s.t4.Store(nt)
	}
	s.n4 -= n
	return n
}

func (t *StickyMap) remove6(s *stickyShard, drop func(uint16, int64) bool) int {
	tab := s.t6.Load()
	if tab == nil {
		return 0
	}
	n := 0
	for i := range tab.slots {
		if m := tab.slots[i].meta.Load(); m != 0 && drop(uint16(m>>16), tab.slots[i].exp.Load()) {
			n++
		}
	}
	switch {
	case n == 0:
	case n <= stickyFewDeletes && s.n6-n >= len(tab.slots)/8:
		for i := uint64(0); i <= tab.mask; i++ {
			for m := tab.slots[i].meta.Load(); m != 0 && drop(uint16(m>>16), tab.slots[i].exp.Load()); m = tab.slots[i].meta.Load() {
				s.seq.Add(1)
				tab.del(i, t.hash6)
				s.seq.Add(1)
			}
		}
	default:
		nt, kept := tab.rebuild(stickySlotsFor(s.n6-n), t.hash6, drop)
		n = s.n6 - kept
		s.t6.Store(nt)
	}
	s.n6 -= n
	return n
}

// Range calls fn for the entries, expired ones not yet removed
// included, until fn returns false. It copies one shard at a time under
// its mutex (readers do not wait for it) and calls fn without holding
// any lock, so fn may be slow or call back into the table. Each entry
// present throughout the iteration is visited exactly once; entries
// added or removed meanwhile may or may not be.
func (t *StickyMap) Range(fn func(StickyEntry) bool) {
	var buf []StickyEntry
	for i := range t.shards {
		buf = t.appendShard(buf[:0], &t.shards[i], nil)
		for _, e := range buf {
			if !fn(e) {
				return
			}
		}
	}
}

// appendShard appends the entries of s that keep accepts (keep may be
// nil) to buf, under the shard's mutex.
func (t *StickyMap) appendShard(buf []StickyEntry, s *stickyShard, keep func(exp int64) bool) []StickyEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tab := s.t4.Load(); tab != nil {
		for i := range tab.slots {
			sl := &tab.slots[i]
			if w := sl.kv.Load(); w != 0 && (keep == nil || keep(sl.exp.Load())) {
				buf = append(buf, StickyEntry{Client: t.prefix4(uint32(w >> 32)), Server: uint16(w >> 16), Expires: sl.exp.Load()})
			}
		}
	}
	if tab := s.t6.Load(); tab != nil {
		for i := range tab.slots {
			sl := &tab.slots[i]
			if m := sl.meta.Load(); m != 0 && (keep == nil || keep(sl.exp.Load())) {
				k := stickyKey6{sl.hi.Load(), sl.lo.Load()}
				buf = append(buf, StickyEntry{Client: t.prefix6(k), Server: uint16(m >> 16), Expires: sl.exp.Load()})
			}
		}
	}
	return buf
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
	var buf []StickyEntry
	for i := range t.shards {
		buf = t.appendShard(buf[:0], &t.shards[i], func(exp int64) bool {
			return exp > now && (len(h) < n || exp > h[0].Expires)
		})
		for _, e := range buf {
			if len(h) < n || e.Expires > h[0].Expires {
				h.offer(n, e)
			}
		}
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
