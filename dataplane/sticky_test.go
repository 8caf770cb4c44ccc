package dataplane

import (
	"net/netip"
	"sync"
	"testing"
	"time"
	"unsafe"
)

const stickyT0 = int64(1_767_225_600_000_000_000) // 2026-01-01T00:00:00Z

func TestStickyKeyMask(t *testing.T) {
	tab := NewStickyMap(24, 64, time.Minute)
	cases := []struct{ in, want string }{
		{"198.18.2.7", "198.18.2.0/24"},
		{"198.18.2.250", "198.18.2.0/24"},
		{"::ffff:198.18.2.9", "198.18.2.0/24"}, // dual-stack listener
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
	}
	for _, c := range cases {
		if got := tab.Key(netip.MustParseAddr(c.in)); got.String() != c.want {
			t.Errorf("Key(%s) = %s, want %s", c.in, got, c.want)
		}
	}
	if got := tab.Key(netip.Addr{}); got.IsValid() {
		t.Errorf("Key(zero) = %s, want invalid", got)
	}
}

func TestStickyMaskGrouping(t *testing.T) {
	now := stickyT0
	t24 := NewStickyMap(24, 64, time.Minute)
	t24.Touch(netip.MustParseAddr("198.18.2.1"), 3, now)
	for _, a := range []string{"198.18.2.1", "198.18.2.200", "::ffff:198.18.2.5"} {
		if s, ok := t24.Lookup(netip.MustParseAddr(a), now); !ok || s != 3 {
			t.Errorf("/24: Lookup(%s) = %d, %v; want 3, true", a, s, ok)
		}
	}
	if _, ok := t24.Lookup(netip.MustParseAddr("198.18.3.1"), now); ok {
		t.Error("/24: 198.18.3.1 found under 198.18.2.0/24")
	}

	t32 := NewStickyMap(32, 128, time.Minute)
	t32.Touch(netip.MustParseAddr("198.18.2.1"), 1, now)
	t32.Touch(netip.MustParseAddr("198.18.2.2"), 2, now)
	if t32.Len() != 2 {
		t.Errorf("/32: Len = %d, want 2", t32.Len())
	}
	for a, want := range map[string]uint16{"198.18.2.1": 1, "198.18.2.2": 2} {
		if s, ok := t32.Lookup(netip.MustParseAddr(a), now); !ok || s != want {
			t.Errorf("/32: Lookup(%s) = %d, %v; want %d", a, s, ok, want)
		}
	}
	if _, ok := t32.Lookup(netip.MustParseAddr("198.18.2.3"), now); ok {
		t.Error("/32: 198.18.2.3 found")
	}

	t24.Touch(netip.MustParseAddr("2001:db8:0:1::1"), 7, now)
	if s, ok := t24.Lookup(netip.MustParseAddr("2001:db8:0:1:ffff::2"), now); !ok || s != 7 {
		t.Errorf("/64: same /64 = %d, %v; want 7, true", s, ok)
	}
	if _, ok := t24.Lookup(netip.MustParseAddr("2001:db8:0:2::1"), now); ok {
		t.Error("/64: other /64 found")
	}
	if _, ok := t24.Lookup(netip.Addr{}, now); ok {
		t.Error("zero Addr found")
	}
}

func TestStickyExpiry(t *testing.T) {
	tab := NewStickyMap(32, 128, 10*time.Second)
	a := netip.MustParseAddr("198.18.2.1")
	b := netip.MustParseAddr("2001:db8::1")
	e, _ := tab.Touch(a, 1, stickyT0)
	tab.Touch(b, 2, stickyT0+int64(5*time.Second))
	if e.Expires != stickyT0+int64(10*time.Second) {
		t.Fatalf("Expires = %d, want now+timeout", e.Expires)
	}
	if _, ok := tab.Lookup(a, e.Expires-1); !ok {
		t.Error("miss just before Expires")
	}
	if _, ok := tab.Lookup(a, e.Expires); ok {
		t.Error("hit at Expires")
	}
	if n := tab.Expire(e.Expires); n != 1 {
		t.Errorf("Expire removed %d, want 1", n)
	}
	if tab.Len() != 1 {
		t.Errorf("Len = %d after Expire, want 1", tab.Len())
	}
	if _, ok := tab.Lookup(b, e.Expires); !ok {
		t.Error("live IPv6 entry removed")
	}
	if n := tab.Expire(stickyT0 + int64(time.Hour)); n != 1 || tab.Len() != 0 {
		t.Errorf("Expire removed %d, Len %d; want 1, 0", n, tab.Len())
	}
}

func TestStickyTouchChanged(t *testing.T) {
	timeout := 40 * time.Second // timeout/4 = 10s
	tab := NewStickyMap(32, 128, timeout)
	a := netip.MustParseAddr("198.18.2.1")
	sec := int64(time.Second)
	steps := []struct {
		name   string
		at     int64
		server uint16
		want   bool
	}{
		{"new", 0, 1, true},
		{"refresh at +5s", 5 * sec, 1, false},
		{"refresh at +10s (not more than timeout/4)", 10 * sec, 1, false},
		{"refresh at +11s", 11 * sec, 1, true},
		{"refresh 1s after last report", 12 * sec, 1, false},
		{"server change", 13 * sec, 2, true},
		{"refresh after change", 14 * sec, 2, false},
		{"after expiry", 14*sec + int64(timeout), 2, true},
	}
	for _, s := range steps {
		e, changed := tab.Touch(a, s.server, stickyT0+s.at)
		if changed != s.want {
			t.Errorf("%s: changed = %v, want %v", s.name, changed, s.want)
		}
		if e.Server != s.server || e.Expires != stickyT0+s.at+int64(timeout) || e.Client.String() != "198.18.2.1/32" {
			t.Errorf("%s: entry = %+v", s.name, e)
		}
	}
	if tab.Len() != 1 {
		t.Errorf("Len = %d, want 1", tab.Len())
	}
}

func TestStickyApplyMerge(t *testing.T) {
	tab := NewStickyMap(24, 64, time.Minute)
	a := netip.MustParseAddr("198.18.2.1")
	e, _ := tab.Touch(a, 1, stickyT0)
	p := e.Client

	tab.Apply(StickyEntry{Client: p, Server: 2, Expires: e.Expires - 1})
	if s, _ := tab.Lookup(a, stickyT0); s != 1 {
		t.Errorf("older entry applied: server %d", s)
	}
	tab.Apply(StickyEntry{Client: p, Server: 2, Expires: e.Expires + 1})
	if s, _ := tab.Lookup(a, stickyT0); s != 2 {
		t.Errorf("newer entry ignored: server %d", s)
	}
	// Equal expiry: the lower server wins on both boxes.
	tab.Apply(StickyEntry{Client: p, Server: 5, Expires: e.Expires + 1})
	tab.Apply(StickyEntry{Client: p, Server: 0, Expires: e.Expires + 1})
	if s, _ := tab.Lookup(a, stickyT0); s != 0 {
		t.Errorf("tie: server %d, want 0", s)
	}
	// Applied entries count as reported: a refresh close to them is quiet.
	if _, changed := tab.Touch(a, 0, stickyT0+1); changed {
		t.Error("refresh of an applied entry reported as changed")
	}
	q := netip.MustParsePrefix("2001:db8:5::/64")
	tab.Apply(StickyEntry{Client: q, Server: 9, Expires: e.Expires})
	if s, ok := tab.Lookup(netip.MustParseAddr("2001:db8:5::77"), stickyT0); !ok || s != 9 {
		t.Errorf("applied IPv6 entry: %d, %v", s, ok)
	}
	if tab.Len() != 2 {
		t.Errorf("Len = %d, want 2", tab.Len())
	}
	tab.Delete(q)
	tab.Delete(q)
	if _, ok := tab.Lookup(netip.MustParseAddr("2001:db8:5::77"), stickyT0); ok || tab.Len() != 1 {
		t.Errorf("after Delete: found %v, Len %d", ok, tab.Len())
	}
}

// stickyFill touches n IPv4 and n IPv6 distinct clients.
func stickyFill(tab *StickyMap, n int, now int64) {
	for i := 0; i < n; i++ {
		tab.Touch(stickyAddr4(i), uint16(i%7), now+int64(i))
		tab.Touch(stickyAddr6(i), uint16(i%7), now+int64(i))
	}
}

func stickyAddr4(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{100, 64 | byte(i>>16), byte(i >> 8), byte(i)})
}

func stickyAddr6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
}

func TestStickyFlushLenRange(t *testing.T) {
	tab := NewStickyMap(32, 128, time.Minute)
	const n = 5000
	stickyFill(tab, n, stickyT0)
	if tab.Len() != 2*n {
		t.Fatalf("Len = %d, want %d", tab.Len(), 2*n)
	}
	seen := make(map[netip.Prefix]int)
	tab.Range(func(e StickyEntry) bool { seen[e.Client]++; return true })
	if len(seen) != 2*n {
		t.Errorf("Range visited %d distinct entries, want %d", len(seen), 2*n)
	}
	for p, c := range seen {
		if c != 1 {
			t.Errorf("Range visited %s %d times", p, c)
		}
	}
	for i := 0; i < n; i += 997 {
		if seen[netip.PrefixFrom(stickyAddr4(i), 32)] != 1 || seen[netip.PrefixFrom(stickyAddr6(i), 128)] != 1 {
			t.Errorf("Range missed client %d", i)
		}
	}
	calls := 0
	tab.Range(func(StickyEntry) bool { calls++; return calls < 10 })
	if calls != 10 {
		t.Errorf("Range went on after false: %d calls", calls)
	}
	if got := tab.Flush(); got != 2*n {
		t.Errorf("Flush = %d, want %d", got, 2*n)
	}
	if tab.Len() != 0 {
		t.Errorf("Len after Flush = %d", tab.Len())
	}
	if _, ok := tab.Lookup(stickyAddr4(1), stickyT0); ok {
		t.Error("hit after Flush")
	}
}

func TestStickyTopAndForget(t *testing.T) {
	tab := NewStickyMap(32, 128, time.Minute)
	const n = 1000
	stickyFill(tab, n, stickyT0) // client i expires at T0+timeout+i
	top := tab.Top(6, stickyT0)
	if len(top) != 6 {
		t.Fatalf("Top(6) returned %d", len(top))
	}
	// Clients 999, 998, 997; the IPv4 and IPv6 client of one i tie.
	want := []string{"100.64.3.231/32", "2001:db8::3e7/128", "100.64.3.230/32", "2001:db8::3e6/128", "100.64.3.229/32", "2001:db8::3e5/128"}
	for i, e := range top {
		if e.Client.String() != want[i] {
			t.Errorf("Top[%d] = %s (expires %d), want %s", i, e.Client, e.Expires, want[i])
		}
	}
	// Expired entries are not shown.
	late := stickyT0 + int64(time.Minute) + n - 2
	if top := tab.Top(10, late); len(top) != 2 {
		t.Errorf("Top at %d: %d entries, want 2", late, len(top))
	}
	if top := tab.Top(0, stickyT0); top != nil {
		t.Errorf("Top(0) = %v", top)
	}
	if all := tab.Top(3*n, stickyT0); len(all) != 2*n {
		t.Errorf("Top(all) = %d entries", len(all))
	}

	removed := tab.ForgetServer(3)
	if removed == 0 || tab.Len() != 2*n-removed {
		t.Errorf("ForgetServer removed %d, Len %d", removed, tab.Len())
	}
	tab.Range(func(e StickyEntry) bool {
		if e.Server == 3 {
			t.Errorf("%s still bound to server 3", e.Client)
			return false
		}
		return true
	})
}

// TestStickyConcurrent runs lookups, touches, applies, expiry, Range and
// Top at once; run it under -race.
func TestStickyConcurrent(t *testing.T) {
	tab := NewStickyMap(24, 64, 50*time.Millisecond)
	const n = 2000
	var wg sync.WaitGroup
	done := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				now := time.Now().UnixNano()
				a := stickyAddr4((i*7 + w) % n)
				if s, ok := tab.Lookup(a, now); ok && s > 3 {
					t.Errorf("server %d never written", s)
					return
				}
				if i%3 == w%3 {
					tab.Touch(a, uint16(w), now)
				}
				if i%13 == 5 {
					tab.Delete(tab.Key(a))
				}
				if i%11 == 0 {
					tab.Apply(StickyEntry{Client: tab.Key(stickyAddr6(i % n)), Server: uint16(w), Expires: now + 1e6})
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			tab.Expire(time.Now().UnixNano())
			if i%5 == 0 {
				tab.Range(func(StickyEntry) bool { return true })
				tab.Top(10, time.Now().UnixNano())
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	close(done)
	wg.Wait()
	left := 0
	tab.Range(func(StickyEntry) bool { left++; return true })
	if left != tab.Len() {
		t.Errorf("Len = %d, Range counted %d", tab.Len(), left)
	}
	tab.Expire(time.Now().UnixNano() + int64(time.Second))
	if tab.Len() != 0 {
		t.Errorf("Len = %d after expiring everything", tab.Len())
	}
}

// TestStickyLayout keeps the shards on cache lines of their own: the
// read side (sequence, table pointers) apart from the writers' mutex.
func TestStickyLayout(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the padding is sized for 64-bit platforms")
	}
	var m StickyMap
	if off := unsafe.Offsetof(m.shards); off%64 != 0 {
		t.Errorf("shards at offset %d, want a multiple of 64", off)
	}
	if sz := unsafe.Sizeof(stickyShard{}); sz != 128 {
		t.Errorf("stickyShard is %d bytes, want 128", sz)
	}
	if off := unsafe.Offsetof(stickyShard{}.mu); off != 64 {
		t.Errorf("stickyShard.mu at %d, want 64", off)
	}
}

// TestStickyCap: beyond SetMax a new client is not bound (and counted),
// IPv4 and IPv6 alike, while bound clients are still refreshed, moved and
// merged from the peer.
func TestStickyCap(t *testing.T) {
	tab := NewStickyMap(32, 128, time.Minute)
	tab.SetMax(3)
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	for i, c := range []string{"198.18.2.1", "198.18.2.2", "2001:db8::1"} {
		if _, changed := tab.Touch(a(c), uint16(i), 1); !changed {
			t.Fatalf("%s not bound under the cap", c)
		}
	}
	for _, c := range []string{"198.18.2.3", "2001:db8::2"} {
		if _, changed := tab.Touch(a(c), 1, 2); changed {
			t.Errorf("%s bound beyond the cap", c)
		}
		if _, ok := tab.Lookup(a(c), 3); ok {
			t.Errorf("%s found beyond the cap", c)
		}
	}
	tab.Apply(StickyEntry{Client: netip.MustParsePrefix("198.18.2.4/32"), Server: 1, Expires: int64(time.Hour)})
	if tab.Len() != 3 || tab.Full() != 3 {
		t.Errorf("len %d, full %d; want 3 and 3", tab.Len(), tab.Full())
	}
	if _, changed := tab.Touch(a("198.18.2.1"), 7, 4); !changed {
		t.Error("a bound client could not move at the cap")
	}
	if s, ok := tab.Lookup(a("198.18.2.1"), 5); !ok || s != 7 {
		t.Errorf("moved client: %d %v", s, ok)
	}
}
