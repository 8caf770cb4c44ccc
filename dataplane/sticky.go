package dataplane

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// StickyEntry is one sticky binding, as replicated to the peer.
type StickyEntry struct {
	// Client is the masked client prefix, e.g. 198.18.2.0/24.
	Client netip.Prefix
	// Server is the index of the server in the cluster's pool. Both boxes
	// share the configuration, so indexes match; the replication layer
	// checks the configuration hash before applying entries.
	Server uint16
	// Expires is an absolute time in Unix nanoseconds, so that both boxes
	// expire the entry alike.
	Expires int64
}

// stickyShardBits sets the number of shards, 256: at 1M entries a
// shard holds about 4k, so the work done under one shard's mutex
// (growing its table, an Expire or Range pass) stays in the tens of
// microseconds.
const (
	stickyShardBits = 8
	stickyShards    = 1 << stickyShardBits
)

// stickyKey6 is a masked IPv6 prefix as two big-endian halves.
type stickyKey6 struct{ hi, lo uint64 }

// stickyShard holds the entries whose key hashes to it, IPv4 and IPv6
// in separate tables so that an IPv4 entry costs a uint32 key.
//
// Readers take no lock: they read the table with atomic loads between
// two loads of seq, and retry if seq was odd or moved (a seqlock).
// Writers hold mu. Inserts and refreshes of the expiry are single
// ordered stores a reader cannot misread, so they leave seq alone; only
// moving entries (delete) or rebinding an entry to another server makes
// seq odd. Growing or shrinking publishes a new table by pointer, so
// readers never wait for it.
type stickyShard struct {
	seq atomic.Uint64
	t4  atomic.Pointer[stickyTable4]
	t6  atomic.Pointer[stickyTable6]
	_   [64 - 24]byte // what readers load on its own cache line

	mu     sync.Mutex
	n4, n6 int // entries in t4, t6; under mu
	_      [64 - 8 - 16]byte
}

// StickyMap is the sticky table of persistence.mode source_ip: it maps
// client prefixes to server indexes, with absolute expiry times so both
// boxes of the pair expire entries alike. It is safe for concurrent use.
// Lookups take no lock (see stickyShard), so readers never contend.
//
// Times are Unix nanoseconds passed in by the caller, so tests and the
// replication layer control the clock.
//
// (It is not called StickyTable: that name is the consumer's interface
// in cluster.go, which an adapter over a StickyMap implements.)
type StickyMap struct {
	mask4, mask6 int
	m4           uint32 // netmask for IPv4 keys
	m6           stickyKey6
	timeout      int64 // ns
	slack        int64 // timeout/4: refreshes within it are not reported
	seed         uint64
	n            atomic.Int64
	// max caps the entries (0: no cap); full counts the bindings refused
	// because of it.
	max    atomic.Int64
	full   atomic.Uint64
	_      [40]byte // shards start on a cache line of their own
	shards [stickyShards]stickyShard
}

// NewStickyMap returns an empty table that groups IPv4 clients by
// mask4 bits and IPv6 clients by mask6 bits, and expires entries timeout
// after their last refresh. Masks out of range (the config package
// rejects them first) are treated as full length.
func NewStickyMap(mask4, mask6 int, timeout time.Duration) *StickyMap {
	if mask4 < 0 || mask4 > 32 {
		mask4 = 32
	}
	if mask6 < 0 || mask6 > 128 {
		mask6 = 128
	}
	t := &StickyMap{mask4: mask4, mask6: mask6, timeout: int64(timeout), slack: int64(timeout) / 4, seed: rand.Uint64()}
	t.m4 = uint32(stickyOnes(mask4) >> 32)
	t.m6 = stickyKey6{hi: stickyOnes(min(mask6, 64)), lo: stickyOnes(max(mask6-64, 0))}
	return t
}

// DefaultStickyMax is the entry cap a node sets on every table: about
// 50 MB at 48 bytes an entry, so that clients with ever new addresses
// (one entry per IPv6 /128 by default) or a peer's bulk cannot grow the
// table without bound. A client beyond it is balanced but not sticky.
const DefaultStickyMax = 1 << 20

// SetMax caps the number of entries; 0 removes the cap. Bindings of new
// clients beyond it are refused (counted by Full); existing entries are
// still refreshed and replaced.
func (t *StickyMap) SetMax(n int) { t.max.Store(int64(max(n, 0))) }

// Full counts the new bindings refused because the table was at its cap.
func (t *StickyMap) Full() uint64 { return t.full.Load() }

// atCap reports (and counts) a new entry refused by the cap.
func (t *StickyMap) atCap() bool {
	if m := t.max.Load(); m > 0 && t.n.Load() >= m {
		t.full.Add(1)
		return true
	}
	return false
}

// stickyOnes returns a uint64 with its top bits bits set.
func stickyOnes(bits int) uint64 {
	if bits == 0 {
		return 0
	}
	return ^uint64(0) << (64 - bits)
}

// key4 returns the masked IPv4 key of client and true, or false for an
// IPv6 client. IPv4-mapped IPv6 addresses count as IPv4, so a dual-stack
// listener sees one client, not two.
func (t *StickyMap) key4(client netip.Addr) (uint32, bool) {
	client = client.Unmap()
	if !client.Is4() {
		return 0, false
	}
	b := client.As4()
	return binary.BigEndian.Uint32(b[:]) & t.m4, true
}

// key6 returns the masked IPv6 key of client.
func (t *StickyMap) key6(client netip.Addr) stickyKey6 {
	b := client.As16()
	return stickyKey6{
		hi: binary.BigEndian.Uint64(b[:8]) & t.m6.hi,
		lo: binary.BigEndian.Uint64(b[8:]) & t.m6.lo,
	}
}

// hash4 and hash6 hash keys with the table's random seed, so that
// clients cannot choose addresses that collide (the tables are open
// addressed). The top bits pick the shard, the low bits the slot.
func (t *StickyMap) hash4(k uint32) uint64 { return mix64(uint64(k) ^ t.seed) }

func (t *StickyMap) hash6(k stickyKey6) uint64 {
	return mix64(mix64(k.hi^t.seed) ^ k.lo)
}

func (t *StickyMap) shard(h uint64) *stickyShard { return &t.shards[h>>(64-stickyShardBits)] }

// prefix4 and prefix6 turn keys back into the prefixes of StickyEntry.
func (t *StickyMap) prefix4(k uint32) netip.Prefix {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], k)
	return netip.PrefixFrom(netip.AddrFrom4(b), t.mask4)
}

func (t *StickyMap) prefix6(k stickyKey6) netip.Prefix {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	return netip.PrefixFrom(netip.AddrFrom16(b), t.mask6)
}

// Key returns the masked prefix that client is grouped under. It is
// the invalid Prefix for the zero Addr.
func (t *StickyMap) Key(client netip.Addr) netip.Prefix {
	if !client.IsValid() {
		return netip.Prefix{}
	}
	if k, ok := t.key4(client); ok {
		return t.prefix4(k)
	}
	return t.prefix6(t.key6(client))
}

// Lookup returns the server bound to client's prefix, or ok false if
// there is none or it has expired at now. It takes no lock and does not
// allocate.
func (t *StickyMap) Lookup(client netip.Addr, now int64) (server uint16, ok bool) {
	var exp int64
	if k, is4 := t.key4(client); is4 {
		server, exp, ok = t.get4(k)
	} else if client.IsValid() {
		server, exp, ok = t.get6(t.key6(client))
	}
	if !ok || now >= exp {
		return 0, false
	}
	return server, true
}

// stickyTries is how many times a reader retries against writers before
// it takes the shard's mutex, so that it always makes progress.
const stickyTries = 4

func (t *StickyMap) get4(k uint32) (server uint16, exp int64, ok bool) {
	h := t.hash4(k)
	s := t.shard(h)
	for try := 0; try < stickyTries; try++ {
		q := s.seq.Load()
		if q&1 != 0 {
			continue
		}
		server, exp, ok = s.t4.Load().get(k, h)
		if s.seq.Load() == q {
			return
		}
	}
	s.mu.Lock()
	server, exp, ok = s.t4.Load().get(k, h)
	s.mu.Unlock()
	return
}

func (t *StickyMap) get6(k stickyKey6) (server uint16, exp int64, ok bool) {
	h := t.hash6(k)
	s := t.shard(h)
	for try := 0; try < stickyTries; try++ {
		q := s.seq.Load()
		if q&1 != 0 {
			continue
		}
		server, exp, ok = s.t6.Load().get(k, h)
		if s.seq.Load() == q {
			return
		}
	}
	s.mu.Lock()
	server, exp, ok = s.t6.Load().get(k, h)
	s.mu.Unlock()
	return
}

// Touch binds client's prefix to server, or refreshes the binding, so
// that it expires at now+timeout. changed reports whether the peer must
// hear of it: the entry is new (or had expired), its server changed, or
// its expiry moved by more than timeout/4 since it was last reported.
// Refreshing on every connection therefore does not flood replication.
func (t *StickyMap) Touch(client netip.Addr, server uint16, now int64) (e StickyEntry, changed bool) {
	e = StickyEntry{Server: server, Expires: now + t.timeout}
	if k, is4 := t.key4(client); is4 {
		e.Client = t.prefix4(k)
		changed = t.set4(k, server, e.Expires, func(old uint16, exp, rep int64) (bool, int64) {
			return t.touched(old, exp, rep, e, now)
		})
	} else if client.IsValid() {
		k := t.key6(client)
		e.Client = t.prefix6(k)
		changed = t.set6(k, server, e.Expires, func(old uint16, exp, rep int64) (bool, int64) {
			return t.touched(old, exp, rep, e, now)
		})
	}
	return e, changed
}

// touched is Touch's rule on an existing entry (old server, expiry and
// reported expiry): whether it changed, and the new reported expiry.
func (t *StickyMap) touched(old uint16, exp, rep int64, e StickyEntry, now int64) (bool, int64) {
	d := e.Expires - rep
	if now >= exp || old != e.Server || d > t.slack || d < -t.slack {
		return true, e.Expires
	}
	return false, rep
}

// Apply merges an entry received from the peer: it is stored unless
// ours expires later. On equal expiry the lower server index wins, so
// both boxes converge whichever order they exchange entries in. An
// applied entry counts as reported: it is not sent back.
func (t *StickyMap) Apply(e StickyEntry) {
	a := e.Client.Addr()
	merge := func(old uint16, exp, rep int64) (bool, int64) {
		if stickyNewer(e.Server, e.Expires, old, exp) {
			return true, e.Expires
		}
		return false, -1 // keep ours
	}
	if k, is4 := t.key4(a); is4 {
		t.set4(k, e.Server, e.Expires, merge)
	} else if a.IsValid() {
		t.set6(t.key6(a), e.Server, e.Expires, merge)
	}
}

// stickyDecide tells set4 and set6 what to do with an existing entry:
// whether it changed (Touch's answer) and its new reported expiry, or
// -1 to leave the entry as it is.
type stickyDecide func(server uint16, exp, rep int64) (changed bool, newRep int64)

// set4 inserts k → (server, exp), reporting it changed, or asks decide
// about the existing entry (update).
func (t *StickyMap) set4(k uint32, server uint16, exp int64, decide stickyDecide) bool {
	h := t.hash4(k)
	s := t.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	tab := s.t4.Load()
	if tab != nil {
		if i, found := tab.find(k, h); found {
			sl := &tab.slots[i]
			return s.update(&sl.kv, &sl.exp, &sl.rep, server, exp, decide)
		}
	}
	if !t.admit(&s.n4) {
		return false
	}
	if tab == nil || stickyFull(s.n4, len(tab.slots)) {
		tab, _ = tab.rebuild(stickySlotsFor(s.n4), t.hash4, nil)
		s.t4.Store(tab)
	}
	i, _ := tab.find(k, h)
	tab.put(i, k, server, exp, exp)
	return true
}

// set6 is set4 for an IPv6 key.
func (t *StickyMap) set6(k stickyKey6, server uint16, exp int64, decide stickyDecide) bool {
	h := t.hash6(k)
	s := t.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	tab := s.t6.Load()
	if tab != nil {
		if i, found := tab.find(k, h); found {
			sl := &tab.slots[i]
			return s.update(&sl.meta, &sl.exp, &sl.rep, server, exp, decide)
		}
	}
	if !t.admit(&s.n6) {
		return false
	}
	if tab == nil || stickyFull(s.n6, len(tab.slots)) {
		tab, _ = tab.rebuild(stickySlotsFor(s.n6), t.hash6, nil)
		s.t6.Store(tab)
	}
	i, _ := tab.find(k, h)
	tab.put(i, k, server, exp, exp)
	return true
}

// update is set4's and set6's work on an existing entry, whose key and
// server word (kv or meta: server<<16 | 1, under the key for IPv4),
// expiry and reported expiry it is given: decide says whether it changed
// and its new reported expiry, or leaves it. Rebinding to another server
// holds the shard's sequence odd, so a reader never sees the new server
// with the old expiry.
func (s *stickyShard) update(word *atomic.Uint64, exp *atomic.Int64, rep *int64, server uint16, newExp int64, decide stickyDecide) bool {
	w := word.Load()
	old := uint16(w >> 16)
	changed, r := decide(old, exp.Load(), *rep)
	if r < 0 {
		return false
	}
	if old != server {
		s.seq.Add(1)
		word.Store(w&^(0xffff<<16) | uint64(server)<<16)
		exp.Store(newExp)
		s.seq.Add(1)
	} else {
		exp.Store(newExp)
	}
	*rep = r
	return changed
}

// admit counts a new entry of a shard's family (n, under its mutex),
// unless the table is at its cap.
func (t *StickyMap) admit(n *int) bool {
	if t.atCap() {
		return false
	}
	*n++
	t.n.Add(1)
	return true
}

// stickyNewer reports whether entry a wins the merge against entry b.
func stickyNewer(aServer uint16, aExp int64, bServer uint16, bExp int64) bool {
	return aExp > bExp || (aExp == bExp && aServer < bServer)
}

// Delete removes the entry of client's prefix, if any. Only the
// prefix's address is used; it is masked with the table's masks.
func (t *StickyMap) Delete(client netip.Prefix) {
	a := client.Addr()
	if k, is4 := t.key4(a); is4 {
		h := t.hash4(k)
		s := t.shard(h)
		s.mu.Lock()
		if tab := s.t4.Load(); tab != nil {
			if i, found := tab.find(k, h); found {
				s.seq.Add(1)
				tab.del(i, t.hash4)
				s.seq.Add(1)
				s.n4--
				t.n.Add(-1)
			}
		}
		s.mu.Unlock()
	} else if a.IsValid() {
		k := t.key6(a)
		h := t.hash6(k)
		s := t.shard(h)
		s.mu.Lock()
		if tab := s.t6.Load(); tab != nil {
			if i, found := tab.find(k, h); found {
				s.seq.Add(1)
				tab.del(i, t.hash6)
				s.seq.Add(1)
				s.n6--
				t.n.Add(-1)
			}
		}
		s.mu.Unlock()
	}
}

// Len returns the number of entries, expired ones not yet removed
// included. It is exact when no write is in flight.
func (t *StickyMap) Len() int { return int(t.n.Load()) }

// Timeout returns the idle timeout the table was built with.
func (t *StickyMap) Timeout() time.Duration { return time.Duration(t.timeout) }
