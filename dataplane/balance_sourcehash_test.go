package dataplane

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// testClients returns n distinct, structured client addresses (sequential,
// the hard case for a weak hash).
func testClients(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	return out
}

// assignClients maps every client to the server source_hash picks for it.
func assignClients(b Balancer, cs []netip.Addr, cands []*Server) map[netip.Addr]*Server {
	m := make(map[netip.Addr]*Server, len(cs))
	for _, c := range cs {
		m[c] = b.Pick(c, cands)
	}
	return m
}

func TestSourceHashSticky(t *testing.T) {
	b := mustBalancer(t, SourceHash)
	cands := testServers(1, 1, 1, 1)
	for _, c := range testClients(100) {
		first := b.Pick(c, cands)
		for range 5 {
			if got := b.Pick(c, cands); got != first {
				t.Fatalf("client %v: %s then %s", c, first.Name, got.Name)
			}
		}
		// A fresh balancer, a shuffled candidate order, the same answer.
		shuffled := append([]*Server(nil), cands...)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := mustBalancer(t, SourceHash).Pick(c, shuffled); got != first {
			t.Fatalf("client %v: %s, then %s with candidates reordered", c, first.Name, got.Name)
		}
	}
	// An IPv4-mapped IPv6 client is the same client.
	v4 := netip.MustParseAddr("192.0.2.1")
	v6 := netip.AddrFrom16(v4.As16())
	if b.Pick(v4, cands) != b.Pick(v6, cands) {
		t.Errorf("%v and %v went to different servers", v4, v6)
	}
}

func TestSourceHashIdentity(t *testing.T) {
	// The identity is Name and Addr, not Index or the *Server: a reload
	// that rebuilds the servers keeps every client where it was.
	cs := testClients(1000)
	before := assignClients(mustBalancer(t, SourceHash), cs, testServers(1, 1, 1))
	rebuilt := testServers(1, 1, 1)
	for i, s := range rebuilt {
		s.Index = 10 + i
	}
	after := assignClients(mustBalancer(t, SourceHash), cs, rebuilt)
	for _, c := range cs {
		if before[c].Name != after[c].Name {
			t.Fatalf("client %v: %s before the rebuild, %s after", c, before[c].Name, after[c].Name)
		}
	}
}

func TestSourceHashDistribution(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
	}{
		{"equal", []int{1, 1, 1, 1}},
		{"weighted", []int{1, 2, 3, 4}},
		{"one heavy", []int{10, 1, 1, 1, 1, 1}},
		{"IPv6 clients", []int{1, 1, 2}},
	}
	const n = 10000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cands := testServers(tt.weights...)
			got := map[*Server]int{}
			cs := testClients(n)
			if tt.name == "IPv6 clients" {
				for i := range cs {
					cs[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 7: byte(i >> 8), 8: byte(i)})
				}
			}
			for _, s := range assignClients(mustBalancer(t, SourceHash), cs, cands) {
				got[s]++
			}
			total := 0
			for _, w := range tt.weights {
				total += w
			}
			for _, s := range cands {
				want := float64(s.Weight) / float64(total)
				share := float64(got[s]) / n
				// σ ≤ 0.5% at n = 10,000: 2 points is four σ.
				if share < want-0.02 || share > want+0.02 {
					t.Errorf("%s (weight %d): %.3f of clients, want %.3f ±0.02", s.Name, s.Weight, share, want)
				}
			}
		})
	}
}

func TestSourceHashConsistent(t *testing.T) {
	b := mustBalancer(t, SourceHash)
	all := testServers(1, 1, 2, 1)
	cs := testClients(10000)
	orig := assignClients(b, cs, all)

	for _, gone := range all {
		var rest []*Server
		for _, s := range all {
			if s != gone {
				rest = append(rest, s)
			}
		}
		t.Run("without "+gone.Name, func(t *testing.T) {
			moved := map[*Server]int{}
			for c, s := range assignClients(b, cs, rest) {
				switch {
				case orig[c] != gone && s != orig[c]:
					t.Fatalf("client %v moved %s → %s though %s stayed", c, orig[c].Name, s.Name, orig[c].Name)
				case orig[c] == gone:
					moved[s]++
				}
			}
			// The departed server's clients spread over all the others.
			for _, s := range rest {
				if moved[s] == 0 {
					t.Errorf("none of %s's clients went to %s: %v", gone.Name, s.Name, moved)
				}
			}
			// It returns: every client is back where it started.
			for c, s := range assignClients(b, cs, all) {
				if s != orig[c] {
					t.Fatalf("client %v: %s at first, %s after %s returned", c, orig[c].Name, s.Name, gone.Name)
				}
			}
		})
	}
}

func TestSourceHashIdentityCacheConcurrent(t *testing.T) {
	// Servers first seen by many goroutines at once, under -race: each
	// client still gets the one server a sequential pick gives it.
	cands := testServers(1, 1, 1, 1, 1, 1, 1, 1)
	cs := testClients(500)
	want := assignClients(mustBalancer(t, SourceHash), cs, cands)
	b := mustBalancer(t, SourceHash)
	errs := make(chan string, 8)
	for g := range 8 {
		go func() {
			var bad string
			for i := range cs {
				c := cs[(i+g*61)%len(cs)]
				if got := b.Pick(c, cands); got != want[c] {
					bad = c.String()
				}
			}
			errs <- bad
		}()
	}
	for range 8 {
		if bad := <-errs; bad != "" {
			t.Errorf("client %s got another server under concurrency", bad)
		}
	}
}
