package dataplane

import "sync/atomic"

// The shards' tables are open-addressed with linear probing and
// backward-shift deletion (no tombstones). Slots are read with atomic
// loads so that lookups need no lock (see stickyShard); they are written
// only under the shard's mutex. A table is at most 3/4 full, so a probe
// always ends at an empty slot.

// stickyMinSlots is the size of a shard's first table.
const stickyMinSlots = 16

// stickySlot4 holds an IPv4 entry in 24 bytes.
type stickySlot4 struct {
	kv  atomic.Uint64 // key<<32 | server<<16 | 1; 0 when empty
	exp atomic.Int64  // Expires, Unix ns
	rep int64         // reported Expires; only touched under the mutex
}

// stickySlot6 holds an IPv6 entry in 40 bytes.
type stickySlot6 struct {
	meta   atomic.Uint64 // server<<16 | 1; 0 when empty
	hi, lo atomic.Uint64 // the masked prefix
	exp    atomic.Int64
	rep    int64
}

// stickyTable4 is one generation of a shard's IPv4 table. It is replaced
// whole when it grows or shrinks, so a reader holding the old one still
// sees a consistent (older) table.
type stickyTable4 struct {
	mask  uint64
	slots []stickySlot4
}

type stickyTable6 struct {
	mask  uint64
	slots []stickySlot6
}

func newStickyTable4(n int) *stickyTable4 {
	return &stickyTable4{mask: uint64(n - 1), slots: make([]stickySlot4, n)}
}

func newStickyTable6(n int) *stickyTable6 {
	return &stickyTable6{mask: uint64(n - 1), slots: make([]stickySlot6, n)}
}

// stickySlotsFor returns the table size for n entries: a power of two
// at most half full, so the table has room to grow before 3/4.
func stickySlotsFor(n int) int {
	c := stickyMinSlots
	for c < 2*n {
		c *= 2
	}
	return c
}

// stickyFull reports whether a table of size slots must grow before
// holding n entries.
func stickyFull(n, slots int) bool { return 4*n > 3*slots }

// find returns the slot of k (hashed h) or of the empty slot ending its
// probe, and whether k was found.
func (t *stickyTable4) find(k uint32, h uint64) (i uint64, found bool) {
	for i = h & t.mask; ; i = (i + 1) & t.mask {
		w := t.slots[i].kv.Load()
		if w == 0 {
			return i, false
		}
		if uint32(w>>32) == k {
			return i, true
		}
	}
}

func (t *stickyTable6) find(k stickyKey6, h uint64) (i uint64, found bool) {
	for i = h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.meta.Load() == 0 {
			return i, false
		}
		if s.hi.Load() == k.hi && s.lo.Load() == k.lo {
			return i, true
		}
	}
}

// get is the lock-free read of k. Under a concurrent writer it may see
// a torn state; the caller validates it with the shard's sequence. It
// never loops for ever: at most one pass over the table.
func (t *stickyTable4) get(k uint32, h uint64) (server uint16, exp int64, ok bool) {
	if t == nil {
		return 0, 0, false
	}
	i := h & t.mask
	for n := uint64(0); n <= t.mask; n++ {
		s := &t.slots[i]
		w := s.kv.Load()
		if w == 0 {
			return 0, 0, false
		}
		if uint32(w>>32) == k {
			return uint16(w >> 16), s.exp.Load(), true
		}
		i = (i + 1) & t.mask
	}
	return 0, 0, false
}

func (t *stickyTable6) get(k stickyKey6, h uint64) (server uint16, exp int64, ok bool) {
	if t == nil {
		return 0, 0, false
	}
	i := h & t.mask
	for n := uint64(0); n <= t.mask; n++ {
		s := &t.slots[i]
		m := s.meta.Load()
		if m == 0 {
			return 0, 0, false
		}
		if s.hi.Load() == k.hi && s.lo.Load() == k.lo {
			return uint16(m >> 16), s.exp.Load(), true
		}
		i = (i + 1) & t.mask
	}
	return 0, 0, false
}

// put fills the empty slot i. The key word is stored last, so a reader
// that sees the slot occupied also sees its expiry.
func (t *stickyTable4) put(i uint64, k uint32, server uint16, exp, rep int64) {
	s := &t.slots[i]
	s.exp.Store(exp)
	s.rep = rep
	s.kv.Store(uint64(k)<<32 | uint64(server)<<16 | 1)
}

func (t *stickyTable6) put(i uint64, k stickyKey6, server uint16, exp, rep int64) {
	s := &t.slots[i]
	s.hi.Store(k.hi)
	s.lo.Store(k.lo)
	s.exp.Store(exp)
	s.rep = rep
	s.meta.Store(uint64(server)<<16 | 1)
}

// del empties slot i and shifts back the entries after it whose probe
// passed through it, so probes still end at the first empty slot.
// Readers may see entries move: the caller holds the shard's sequence
// odd. hash rehashes a stored key.
func (t *stickyTable4) del(i uint64, hash func(uint32) uint64) {
	for j := (i + 1) & t.mask; ; j = (j + 1) & t.mask {
		w := t.slots[j].kv.Load()
		if w == 0 {
			break
		}
		home := hash(uint32(w>>32)) & t.mask
		if (j-home)&t.mask >= (j-i)&t.mask {
			t.put(i, uint32(w>>32), uint16(w>>16), t.slots[j].exp.Load(), t.slots[j].rep)
			i = j
		}
	}
	t.slots[i].kv.Store(0)
}

func (t *stickyTable6) del(i uint64, hash func(stickyKey6) uint64) {
	for j := (i + 1) & t.mask; ; j = (j + 1) & t.mask {
		s := &t.slots[j]
		m := s.meta.Load()
		if m == 0 {
			break
		}
		k := stickyKey6{s.hi.Load(), s.lo.Load()}
		home := hash(k) & t.mask
		if (j-home)&t.mask >= (j-i)&t.mask {
			t.put(i, k, uint16(m>>16), s.exp.Load(), s.rep)
			i = j
		}
	}
	t.slots[i].meta.Store(0)
}

// rebuild returns a new table of size slots holding the entries of t
// that drop does not reject (drop may be nil), and how many it holds.
func (t *stickyTable4) rebuild(slots int, hash func(uint32) uint64, drop func(server uint16, exp int64) bool) (*stickyTable4, int) {
	nt := newStickyTable4(slots)
	n := 0
	if t == nil {
		return nt, 0
	}
	for i := range t.slots {
		s := &t.slots[i]
		w := s.kv.Load()
		if w == 0 || (drop != nil && drop(uint16(w>>16), s.exp.Load())) {
			continue
		}
		k := uint32(w >> 32)
		j, _ := nt.find(k, hash(k))
		nt.put(j, k, uint16(w>>16), s.exp.Load(), s.rep)
		n++
	}
	return nt, n
}

func (t *stickyTable6) rebuild(slots int, hash func(stickyKey6) uint64, drop func(server uint16, exp int64) bool) (*stickyTable6, int) {
	nt := newStickyTable6(slots)
	n := 0
	if t == nil {
		return nt, 0
	}
	for i := range t.slots {
		s := &t.slots[i]
		m := s.meta.Load()
		if m == 0 || (drop != nil && drop(uint16(m>>16), s.exp.Load())) {
			continue
		}
		k := stickyKey6{s.hi.Load(), s.lo.Load()}
		j, _ := nt.find(k, hash(k))
		nt.put(j, k, uint16(m>>16), s.exp.Load(), s.rep)
		n++
	}
	return nt, n
}
