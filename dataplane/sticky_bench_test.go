package dataplane

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"
)

// stickyBenchN is the number of pre-filled entries of the Figures.
const stickyBenchN = 1 << 20

// stickyBenchClient returns the i-th benchmark client: 100.64.0.0/10 and
// up, in an order the maps' hashes do not favour.
func stickyBenchClient(i int) netip.Addr {
	u := uint32(0x64400000 + i)
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}

// stickyBenchFixture is a table of stickyBenchN /32 entries and its
// clients in a random order, built once for the read-only benchmarks.
var stickyBenchFixture = sync.OnceValues(func() (*StickyMap, []netip.Addr) {
	tab := NewStickyMap(32, 128, time.Hour)
	clients := make([]netip.Addr, stickyBenchN)
	for i := range clients {
		clients[i] = stickyBenchClient(i)
		tab.Touch(clients[i], uint16(i%16), stickyT0)
	}
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(clients), func(i, j int) { clients[i], clients[j] = clients[j], clients[i] })
	return tab, clients
})

func BenchmarkStickyLookup(b *testing.B) {
	tab, clients := stickyBenchFixture()
	b.ReportAllocs()
	var cpu stickyCPU
	b.ResetTimer()
	cpu.start()
	hits := 0
	for i := 0; i < b.N; i++ {
		if _, ok := tab.Lookup(clients[i&(stickyBenchN-1)], stickyT0); ok {
			hits++
		}
	}
	cpu.stop(b)
	if hits != b.N {
		b.Fatalf("%d hits of %d", hits, b.N)
	}
}

func BenchmarkStickyLookupParallel(b *testing.B) {
	tab, clients := stickyBenchFixture()
	b.ReportAllocs()
	b.ResetTimer()
	var seed sync.Mutex
	next := 0
	b.RunParallel(func(pb *testing.PB) {
		seed.Lock()
		i := next * 7919
		next++
		seed.Unlock()
		for pb.Next() {
			if _, ok := tab.Lookup(clients[i&(stickyBenchN-1)], stickyT0); !ok {
				b.Error("miss")
				return
			}
			i++
		}
	})
}

// BenchmarkStickyTouch inserts new keys into a table of stickyBenchN
// entries.
func BenchmarkStickyTouch(b *testing.B) {
	tab := NewStickyMap(32, 128, time.Hour)
	for i := 0; i < stickyBenchN; i++ {
		tab.Touch(stickyBenchClient(i), uint16(i%16), stickyT0)
	}
	b.ReportAllocs()
	var cpu stickyCPU
	b.ResetTimer()
	cpu.start()
	for i := 0; i < b.N; i++ {
		if _, changed := tab.Touch(stickyBenchClient(stickyBenchN+i), 1, stickyT0); !changed {
			b.Fatal("new key not reported")
		}
	}
	cpu.stop(b)
}

// BenchmarkStickyRefresh touches existing keys, as every connection of
// a known client does.
func BenchmarkStickyRefresh(b *testing.B) {
	tab, clients := stickyBenchFixture()
	b.ReportAllocs()
	var cpu stickyCPU
	b.ResetTimer()
	cpu.start()
	for i := 0; i < b.N; i++ {
		tab.Touch(clients[i&(stickyBenchN-1)], uint16(i&(stickyBenchN-1))%16, stickyT0)
	}
	cpu.stop(b)
}

// TestStickyMemoryPerEntry measures the heap held per entry at 1M
// entries, IPv4 and IPv6.
func TestStickyMemoryPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("heavy: fills 1M entries twice")
	}
	for _, v6 := range []bool{false, true} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		tab := NewStickyMap(32, 128, time.Hour)
		for i := 0; i < stickyBenchN; i++ {
			a := stickyBenchClient(i)
			if v6 {
				a = stickyAddr6(i)
			}
			tab.Touch(a, uint16(i%16), stickyT0)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		per := float64(after.HeapAlloc-before.HeapAlloc) / stickyBenchN
		runtime.KeepAlive(tab)
		t.Logf("IPv6=%v: %.1f bytes of heap per entry at %d entries", v6, per, tab.Len())
		if per > 150 {
			t.Errorf("IPv6=%v: %.1f bytes per entry, want ≤ 150", v6, per)
		}
	}
}
