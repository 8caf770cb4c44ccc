package dataplane

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
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

// stickyShards is the number of independently locked shards. A power of
// two: the shard is the top bits of the key's hash.
const (
	stickyShardBits = 6
	stickyShards    = 1 << stickyShardBits
)

// stickyKey6 is a masked IPv6 prefix as two big-endian halves.
type stickyKey6 struct{ hi, lo uint64 }

// stickyVal is the value stored per entry: 24 bytes.
type stickyVal struct {
	expires  int64 // absolute Unix ns
	reported int64 // Expires when the entry was last reported changed
	server   uint16
}

// stickyShard holds the entries whose key hashes to it. IPv4 and IPv6
// keys live in separate maps so that an IPv4 entry costs a uint32 key.
type stickyShard struct {
	mu sync.RWMutex
	v4 map[uint32]stickyVal
	v6 map[stickyKey6]stickyVal
	// Pad to a cache line so neighbouring shards' locks do not share one.
	_ [64 - (unsafe.Sizeof(sync.RWMutex{})+16)%64]byte
}

// StickyMap is the sticky table of persistence.mode source_ip: it maps
// client prefixes to server indexes, with absolute expiry times so both
// boxes of the pair expire entries alike. It is safe for concurrent use.
// Lookups take only their shard's read lock, so readers never contend
// on one global lock.
//
// (It is not called StickyTable: that name is the consumer's interface
// in cluster.go, which an adapter over a StickyMap implements.)
//
// Times are Unix nanoseconds passed in by the caller, so tests and the
// replication layer control the clock.
type StickyMap struct {
	mask4, mask6 int
	m4           uint32 // netmask for IPv4 keys
	m6           stickyKey6
	timeout      int64 // ns
	slack        int64 // timeout/4: refreshes within it are not reported
	n            atomic.Int64
	shards       [stickyShards]stickyShard
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
	t := &StickyMap{mask4: mask4, mask6: mask6, timeout: int64(timeout), slack: int64(timeout) / 4}
	t.m4 = uint32(stickyOnes(mask4) >> 32)
	t.m6 = stickyKey6{hi: stickyOnes(min(mask6, 64)), lo: stickyOnes(max(mask6-64, 0))}
	for i := range t.shards {
		t.shards[i].v4 = make(map[uint32]stickyVal)
		t.shards[i].v6 = make(map[stickyKey6]stickyVal)
	}
	return t
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

// The shard of a key is the top bits of a multiplicative hash (the
// maps hash the keys again with their own seed).
func (t *StickyMap) shard4(k uint32) *stickyShard {
	return &t.shards[(uint64(k)*0x9e3779b97f4a7c15)>>(64-stickyShardBits)]
}

func (t *StickyMap) shard6(k stickyKey6) *stickyShard {
	h := (k.hi ^ (k.lo * 0xbf58476d1ce4e5b9)) * 0x9e3779b97f4a7c15
	return &t.shards[h>>(64-stickyShardBits)]
}

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
// there is none or it has expired at now. It does not allocate and takes
// only one shard's read lock.
func (t *StickyMap) Lookup(client netip.Addr, now int64) (server uint16, ok bool) {
	var v stickyVal
	if k, is4 := t.key4(client); is4 {
		s := t.shard4(k)
		s.mu.RLock()
		v, ok = s.v4[k]
		s.mu.RUnlock()
	} else if client.IsValid() {
		k := t.key6(client)
		s := t.shard6(k)
		s.mu.RLock()
		v, ok = s.v6[k]
		s.mu.RUnlock()
	}
	if !ok || now >= v.expires {
		return 0, false
	}
	return v.server, true
}

// Touch binds client's prefix to server, or refreshes the binding, so
// that it expires at now+timeout. changed reports whether the peer must
// hear of it: the entry is new (or had expired), its server changed, or
// its expiry moved by more than timeout/4 since it was last reported.
// Refreshing on every connection therefore does not flood replication.
func (t *StickyMap) Touch(client netip.Addr, server uint16, now int64) (e StickyEntry, changed bool) {
	e = StickyEntry{Server: server, Expires: now + t.timeout}
	if k, is4 := t.key4(client); is4 {
		s := t.shard4(k)
		s.mu.Lock()
		v, ok := s.v4[k]
		v, changed = t.touched(v, ok, e, now)
		s.v4[k] = v
		s.mu.Unlock()
		if !ok {
			t.n.Add(1)
		}
		e.Client = t.prefix4(k)
	} else if client.IsValid() {
		k := t.key6(client)
		s := t.shard6(k)
		s.mu.Lock()
		v, ok := s.v6[k]
		v, changed = t.touched(v, ok, e, now)
		s.v6[k] = v
		s.mu.Unlock()
		if !ok {
			t.n.Add(1)
		}
		e.Client = t.prefix6(k)
	}
	return e, changed
}

// touched is Touch's rule on one value: old is the stored value if
// found, e the refreshed binding.
func (t *StickyMap) touched(old stickyVal, found bool, e StickyEntry, now int64) (stickyVal, bool) {
	v := stickyVal{expires: e.Expires, reported: old.reported, server: e.Server}
	d := e.Expires - old.reported
	if !found || now >= old.expires || old.server != e.Server || d > t.slack || d < -t.slack {
		v.reported = e.Expires
		return v, true
	}
	return v, false
}

// Apply merges an entry received from the peer: it is stored unless
// ours expires later. On equal expiry the lower server index wins, so
// both boxes converge whichever order they exchange entries in. An
// applied entry counts as reported: it is not sent back.
func (t *StickyMap) Apply(e StickyEntry) {
	a := e.Client.Addr()
	nv := stickyVal{expires: e.Expires, reported: e.Expires, server: e.Server}
	if k, is4 := t.key4(a); is4 {
		s := t.shard4(k)
		s.mu.Lock()
		v, ok := s.v4[k]
		if !ok || stickyNewer(nv, v) {
			s.v4[k] = nv
		}
		s.mu.Unlock()
		if !ok {
			t.n.Add(1)
		}
	} else if a.IsValid() {
		k := t.key6(a)
		s := t.shard6(k)
		s.mu.Lock()
		v, ok := s.v6[k]
		if !ok || stickyNewer(nv, v) {
			s.v6[k] = nv
		}
		s.mu.Unlock()
		if !ok {
			t.n.Add(1)
		}
	}
}

// stickyNewer reports whether a wins the merge against b.
func stickyNewer(a, b stickyVal) bool {
	return a.expires > b.expires || (a.expires == b.expires && a.server < b.server)
}

// Delete removes the entry of client's prefix, if any. Only the
// prefix's address is used; it is masked with the table's masks.
func (t *StickyMap) Delete(client netip.Prefix) {
	a := client.Addr()
	if k, is4 := t.key4(a); is4 {
		s := t.shard4(k)
		s.mu.Lock()
		_, ok := s.v4[k]
		delete(s.v4, k)
		s.mu.Unlock()
		if ok {
			t.n.Add(-1)
		}
	} else if a.IsValid() {
		k := t.key6(a)
		s := t.shard6(k)
		s.mu.Lock()
		_, ok := s.v6[k]
		delete(s.v6, k)
		s.mu.Unlock()
		if ok {
			t.n.Add(-1)
		}
	}
}

// Len returns the number of entries, expired ones not yet removed
// included. It is exact when no write is in flight.
func (t *StickyMap) Len() int { return int(t.n.Load()) }

// Timeout returns the idle timeout the table was built with.
func (t *StickyMap) Timeout() time.Duration { return time.Duration(t.timeout) }
