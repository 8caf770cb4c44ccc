package dataplane

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// testServers builds a pool-ordered set of healthy servers with the given
// weights, named a, b, c, ...
func testServers(weights ...int) []*Server {
	out := make([]*Server, len(weights))
	for i, w := range weights {
		name := string(rune('a' + i))
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(21 + i)}), 80)
		out[i] = NewServer(i, name, addr, w)
	}
	return out
}

func mustBalancer(t testing.TB, algorithm string) Balancer {
	t.Helper()
	b, err := NewBalancer(algorithm)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var testClient = netip.MustParseAddr("203.0.113.7")

// pickSequence picks n times and returns the picked names, concatenated.
func pickSequence(b Balancer, cands []*Server, n int) string {
	var sb strings.Builder
	for range n {
		sb.WriteString(b.Pick(testClient, cands).Name)
	}
	return sb.String()
}

// pickCounts picks n times and counts picks per server name.
func pickCounts(b Balancer, cands []*Server, n int) map[string]int {
	m := map[string]int{}
	for range n {
		m[b.Pick(testClient, cands).Name]++
	}
	return m
}

func TestNewBalancer(t *testing.T) {
	for _, name := range []string{RoundRobin, WeightedRoundRobin, LeastConn, SourceHash, RandomTwo, FastestResponse} {
		b, err := NewBalancer(name)
		if err != nil || b == nil {
			t.Errorf("NewBalancer(%q) = %v, %v", name, b, err)
		}
	}
	for _, name := range []string{"", "roundrobin", "LEAST_CONN", "wrr"} {
		b, err := NewBalancer(name)
		if err == nil || b != nil {
			t.Errorf("NewBalancer(%q) = %v, %v; want an error", name, b, err)
			continue
		}
		if !strings.Contains(err.Error(), "round_robin, weighted_round_robin") {
			t.Errorf("NewBalancer(%q) error %q does not list the algorithms", name, err)
		}
	}
}

func TestRoundRobin(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		picks   int
		want    string
	}{
		{"one server", []int{1}, 3, "aaa"},
		{"strict rotation", []int{1, 1, 1}, 7, "abcabca"},
		{"weights ignored", []int{5, 1, 1}, 6, "abcabc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustBalancer(t, RoundRobin)
			if got := pickSequence(b, testServers(tt.weights...), tt.picks); got != tt.want {
				t.Errorf("picks = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestWeightedRoundRobin(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		want    string // one full cycle of Σweight picks
	}{
		{"nginx 5,1,1", []int{5, 1, 1}, "aabacaa"},
		{"equal weights rotate", []int{1, 1, 1}, "abc"},
		{"3,2,1", []int{3, 2, 1}, "abacba"},
		{"one server", []int{4}, "aaaa"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustBalancer(t, WeightedRoundRobin)
			cands := testServers(tt.weights...)
			if got := pickSequence(b, cands, len(tt.want)); got != tt.want {
				t.Errorf("first cycle = %s, want %s", got, tt.want)
			}
			// Every later cycle repeats it, so 100 cycles are exact.
			total := len(tt.want)
			got := pickCounts(b, cands, 100*total)
			for i, s := range cands {
				if want := 100 * tt.weights[i]; got[s.Name] != want {
					t.Errorf("%s: %d picks of %d, want %d", s.Name, got[s.Name], 100*total, want)
				}
			}
		})
	}
}

func TestWeightedRoundRobinChangingCandidates(t *testing.T) {
	for _, away := range []int{600, 601, 605} {
		t.Run(fmt.Sprint(away), func(t *testing.T) {
			b := mustBalancer(t, WeightedRoundRobin)
			all := testServers(5, 1, 1)
			a, c := all[0], all[2]
			pickSequence(b, all, 3) // mid-cycle: a a b
			// b leaves: a and c share 5:1.
			got := pickCounts(b, []*Server{a, c}, away)
			if d := got["a"] - 5*got["c"]; d < -5 || d > 5 {
				t.Errorf("without b: %v, want 5:1", got)
			}
			// b returns: the current weights sum to zero again, as for a
			// pool that never changed, and 5:1:1 holds within one pick.
			var sum int64
			for _, v := range b.(*weightedRoundRobin).current {
				sum += v
			}
			if sum != 0 {
				t.Errorf("current weights sum to %d after b returned, want 0", sum)
			}
			got = pickCounts(b, all, 700)
			for _, s := range all {
				if d := got[s.Name] - 100*s.Weight; d < -1 || d > 1 {
					t.Errorf("after b returned: %v, want 500:100:100 ±1", got)
					break
				}
			}
		})
	}
}

func TestLeastConn(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		active  []int64
		want    string
	}{
		{"fewest active", []int{1, 1, 1}, []int64{3, 1, 2}, "b"},
		{"first is fewest", []int{1, 1, 1}, []int64{0, 1, 2}, "a"},
		{"last is fewest", []int{1, 1, 1}, []int64{5, 5, 4}, "c"},
		// (2+1)/3 = 1 < (1+1)/1 = 2: the heavier server takes more.
		{"weighted", []int{1, 3}, []int64{1, 2}, "b"},
		// (3+1)/3 > (0+1)/1: not once it has more than its share.
		{"weighted, full", []int{3, 1}, []int64{3, 0}, "b"},
		// (1)/2 < (1)/1: idle, the heavier goes first.
		{"weighted idle", []int{1, 2}, []int64{0, 0}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cands := testServers(tt.weights...)
			for i, s := range cands {
				s.active.Store(tt.active[i])
			}
			b := mustBalancer(t, LeastConn)
			// Whatever the rotation offset, the answer is the same.
			for range 2 * len(cands) {
				if got := b.Pick(testClient, cands).Name; got != tt.want {
					t.Fatalf("picked %s, want %s", got, tt.want)
				}
			}
		})
	}
}

func TestLeastConnTiesShareLoad(t *testing.T) {
	b := mustBalancer(t, LeastConn)
	cands := testServers(1, 1, 1, 1)
	got := pickCounts(b, cands, 400) // nothing acquired: every pick is a tie
	for _, s := range cands {
		if got[s.Name] != 100 {
			t.Fatalf("idle ties: %v, want 100 each", got)
		}
	}
	// Held connections fill servers evenly, by weight.
	b = mustBalancer(t, LeastConn)
	cands = testServers(2, 1, 1)
	for range 400 {
		b.Pick(testClient, cands).Acquire()
	}
	if a, bb, c := cands[0].Active(), cands[1].Active(), cands[2].Active(); a != 200 || bb != 100 || c != 100 {
		t.Errorf("active after 400 held picks = %d,%d,%d, want 200,100,100", a, bb, c)
	}
}

func TestRandomTwo(t *testing.T) {
	b := mustBalancer(t, RandomTwo)
	cands := testServers(1, 1, 1)
	cands[2].active.Store(10) // the busiest; a and b idle
	const n = 30000
	got := pickCounts(b, cands, n)
	if got["c"] != 0 {
		t.Errorf("busiest picked %d of %d times, want never", got["c"], n)
	}
	// The idle pair split the load about evenly (σ ≈ 87 picks).
	if d := got["a"] - got["b"]; d < -n/20 || d > n/20 {
		t.Errorf("idle servers split %v, want about even", got)
	}
	if got := mustBalancer(t, RandomTwo).Pick(testClient, cands[:1]); got != cands[0] {
		t.Errorf("single candidate: picked %v", got)
	}
}

func TestRandomTwoWeighted(t *testing.T) {
	// With two servers both are always drawn, so held connections fill
	// them exactly by weight, as least_conn would.
	b := mustBalancer(t, RandomTwo)
	cands := testServers(3, 1)
	for range 4000 {
		b.Pick(testClient, cands).Acquire()
	}
	if a, bb := cands[0].Active(), cands[1].Active(); a != 3000 || bb != 1000 {
		t.Errorf("weights 3,1 after 4000 held picks: %d,%d, want 3000,1000", a, bb)
	}
	// Three servers with loads 0, 10, 20: the idlest wins both pairs it
	// is in (2/3 of picks), the middle one the other pair, the busiest
	// none.
	b = mustBalancer(t, RandomTwo)
	cands = testServers(1, 1, 1)
	for i, s := range cands {
		s.active.Store(int64(10 * i))
	}
	got := pickCounts(b, cands, 30000)
	if got["c"] != 0 || got["a"] < 19000 || got["a"] > 21000 {
		t.Errorf("loads 0,10,20: picks %v, want a ≈ 20000, b ≈ 10000, c never", got)
	}
	// Weighted the same way: c's weight 4 makes its 20 lighter than 10.
	cands[2].Weight = 4 // (20+1)/4 < (10+1)/1
	got = pickCounts(b, cands, 30000)
	if got["b"] != 0 {
		t.Errorf("loads 0,10,20 weights 1,1,4: picks %v, want b never", got)
	}
}

func TestFastestResponse(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		connect []time.Duration // 0: not measured
		active  []int64
		want    string
	}{
		{"unmeasured first", []time.Duration{1 * ms, 0, 2 * ms}, []int64{0, 5, 0}, "b"},
		{"fastest", []time.Duration{3 * ms, 1 * ms, 2 * ms}, []int64{0, 9, 0}, "b"},
		{"tie: fewer active", []time.Duration{2 * ms, 1 * ms, 1 * ms}, []int64{0, 4, 3}, "c"},
		{"unmeasured tie: fewer active", []time.Duration{0, 0, 1 * ms}, []int64{2, 1, 0}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cands := testServers(1, 1, 1)
			for i, s := range cands {
				if tt.connect[i] != 0 {
					s.ObserveConnect(tt.connect[i])
				}
				s.active.Store(tt.active[i])
			}
			b := mustBalancer(t, FastestResponse)
			for range 2 * len(cands) {
				if got := b.Pick(testClient, cands).Name; got != tt.want {
					t.Fatalf("picked %s, want %s", got, tt.want)
				}
			}
		})
	}
}

func TestFastestResponseMeasuresEveryServer(t *testing.T) {
	// A burst of connects before any completes: each server is tried once.
	b := mustBalancer(t, FastestResponse)
	cands := testServers(1, 1, 1, 1)
	seen := map[string]bool{}
	for range len(cands) {
		s := b.Pick(testClient, cands)
		s.Acquire()
		seen[s.Name] = true
	}
	if len(seen) != len(cands) {
		t.Errorf("first %d picks went to %v, want every server", len(cands), seen)
	}
	// Once measured, the fastest takes the traffic.
	for i, s := range cands {
		s.ObserveConnect(time.Duration(4-i) * time.Millisecond)
	}
	if got := pickSequence(b, cands, 4); got != "dddd" {
		t.Errorf("after measuring: %s, want dddd", got)
	}
}

// TestBalancersConcurrent runs every balancer from many goroutines over a
// candidate set that changes underneath, under -race. Round robin and
// smooth WRR must stay exact even so.
func TestBalancersConcurrent(t *testing.T) {
	const goroutines, per = 8, 700
	for _, name := range []string{RoundRobin, WeightedRoundRobin, LeastConn, SourceHash, RandomTwo, FastestResponse} {
		t.Run(name, func(t *testing.T) {
			b := mustBalancer(t, name)
			all := testServers(5, 1, 1)
			var mu sync.Mutex
			got := map[string]int{}
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					local := map[string]int{}
					addr := netip.AddrFrom4([4]byte{10, 0, byte(g), 1})
					for i := range per {
						s := b.Pick(addr, all)
						s.Acquire()
						s.ObserveConnect(time.Duration(1+s.Index) * time.Microsecond)
						local[s.Name]++
						s.Release()
						if i%7 == 0 {
							// A smaller set, as after a health change.
							b.Pick(addr, all[1:])
						}
					}
					mu.Lock()
					defer mu.Unlock()
					for k, v := range local {
						got[k] += v
					}
				})
			}
			wg.Wait()
			sum := 0
			for _, v := range got {
				sum += v
			}
			if sum != goroutines*per {
				t.Fatalf("%d picks counted, want %d", sum, goroutines*per)
			}
			if name == RoundRobin {
				// Total picks (including all[1:]) interleave, so only
				// check every server got a fair share.
				for _, s := range all {
					if got[s.Name] < sum/5 {
						t.Errorf("round robin: %v, want about a third each", got)
					}
				}
			}
			for _, s := range all {
				if s.Active() != 0 {
					t.Errorf("%s active = %d after all released", s.Name, s.Active())
				}
			}
		})
	}
}

func TestBalancersConcurrentExact(t *testing.T) {
	// With a fixed candidate set, concurrent round robin and smooth WRR
	// give exactly the sequential proportions.
	const goroutines, per = 8, 840 // 6720 picks: a multiple of 3 and of 7
	for _, tt := range []struct {
		algorithm string
		weights   []int
		want      []int
	}{
		{RoundRobin, []int{5, 1, 1}, []int{1, 1, 1}},
		{WeightedRoundRobin, []int{5, 1, 1}, []int{5, 1, 1}},
	} {
		t.Run(tt.algorithm, func(t *testing.T) {
			b := mustBalancer(t, tt.algorithm)
			cands := testServers(tt.weights...)
			var wg sync.WaitGroup
			for range goroutines {
				wg.Go(func() {
					for range per {
						b.Pick(testClient, cands).Acquire()
					}
				})
			}
			wg.Wait()
			unit := int64(goroutines * per / (tt.want[0] + tt.want[1] + tt.want[2]))
			for i, s := range cands {
				if want := unit * int64(tt.want[i]); s.Total() != uint64(want) {
					t.Errorf("%s: %d picks, want %d", s.Name, s.Total(), want)
				}
			}
		})
	}
}

func TestBalancersDoNotAllocate(t *testing.T) {
	for _, name := range []string{RoundRobin, WeightedRoundRobin, LeastConn, SourceHash, RandomTwo, FastestResponse} {
		b := mustBalancer(t, name)
		cands := testServers(1, 2, 3, 4, 1, 2, 3, 4)
		b.Pick(testClient, cands) // first sight of the servers may allocate
		i := 0
		allocs := testing.AllocsPerRun(1000, func() {
			i++
			b.Pick(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), cands)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per pick, want 0", name, allocs)
		}
	}
}

func ExampleNewBalancer() {
	b, err := NewBalancer(WeightedRoundRobin)
	if err != nil {
		panic(err)
	}
	port := func(p uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr("198.18.0.21"), p) }
	pool := []*Server{
		NewServer(0, "a", port(8080), 5),
		NewServer(1, "b", port(8081), 1),
		NewServer(2, "c", port(8082), 1),
	}
	client := netip.MustParseAddr("203.0.113.7")
	for range 7 {
		fmt.Print(b.Pick(client, pool).Name, " ")
	}
	fmt.Println()
	// Output: a a b a c a a
}
