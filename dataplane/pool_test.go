package dataplane

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
)

func serverNames(ss []*Server) string {
	s := ""
	for _, x := range ss {
		s += x.Name
	}
	return s
}

func TestPoolLookup(t *testing.T) {
	all := testServers(1, 1, 1)
	p := NewPool(all, mustBalancer(t, RoundRobin))
	if got := serverNames(p.Servers()); got != "abc" {
		t.Errorf("Servers() = %s, want abc", got)
	}
	if got := p.Server("b"); got != all[1] {
		t.Errorf(`Server("b") = %v`, got)
	}
	if got := p.Server("nope"); got != nil {
		t.Errorf(`Server("nope") = %v, want nil`, got)
	}
	if got := p.Available(); got != 3 {
		t.Errorf("Available() = %d, want 3", got)
	}
}

func TestPoolPick(t *testing.T) {
	tests := []struct {
		name      string
		change    func(ss []*Server) // before Refresh
		exclude   int                // index into servers, -1 for none
		want      string             // servers picked over 6 round-robin picks
		available int
	}{
		{"all in", func([]*Server) {}, -1, "abcabc", 3},
		{"unhealthy out", func(ss []*Server) { ss[1].SetHealthy(false) }, -1, "acacac", 2},
		{"draining out", func(ss []*Server) { ss[0].SetAdmin(Draining) }, -1, "bcbcbc", 2},
		{"disabled out", func(ss []*Server) { ss[2].SetAdmin(Disabled) }, -1, "ababab", 2},
		{"exclude", func([]*Server) {}, 0, "bcbcbc", 3},
		{"exclude the last", func(ss []*Server) { ss[0].SetHealthy(false); ss[2].SetAdmin(Draining) }, 1, "", 1},
		{"exclude one not available", func(ss []*Server) { ss[0].SetHealthy(false) }, 0, "bcbcbc", 2},
		{"none available", func(ss []*Server) {
			for _, s := range ss {
				s.SetHealthy(false)
			}
		}, -1, "", 0},
		{"back in", func(ss []*Server) {
			ss[1].SetHealthy(false)
			ss[1].SetHealthy(true)
			ss[2].SetAdmin(Draining)
			ss[2].SetAdmin(Enabled)
		}, -1, "abcabc", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := testServers(1, 1, 1)
			p := NewPool(all, mustBalancer(t, RoundRobin))
			tt.change(all)
			var exclude *Server
			if tt.exclude >= 0 {
				exclude = all[tt.exclude]
			}
			p.Refresh()
			if got := p.Available(); got != tt.available {
				t.Errorf("Available() = %d, want %d", got, tt.available)
			}
			got := ""
			for range 6 {
				s := p.Pick(testClient, exclude)
				if s == nil {
					continue
				}
				got += s.Name
			}
			if got != tt.want {
				t.Errorf("picks = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPoolSnapshotUntilRefresh(t *testing.T) {
	all := testServers(1, 1)
	p := NewPool(all, mustBalancer(t, RoundRobin))
	all[0].SetHealthy(false)
	if p.Available() != 2 {
		t.Errorf("Available() = %d before Refresh, want the old 2", p.Available())
	}
	p.Refresh()
	for range 4 {
		if s := p.Pick(testClient, nil); s != all[1] {
			t.Fatalf("picked %v after Refresh, want b", s)
		}
	}
}

func TestPoolExcludeSourceHash(t *testing.T) {
	// A retry under source_hash goes to the client's runner-up, which is
	// where the client would land if its server left the pool.
	all := testServers(1, 1, 1, 1)
	p := NewPool(all, mustBalancer(t, SourceHash))
	for _, c := range testClients(200) {
		first := p.Pick(c, nil)
		retry := p.Pick(c, first)
		if retry == nil || retry == first {
			t.Fatalf("client %v: retry gave %v after %s", c, retry, first.Name)
		}
		if again := p.Pick(c, first); again != retry {
			t.Fatalf("client %v: retries gave %s then %s", c, retry.Name, again.Name)
		}
	}
}

func TestPoolPickDoesNotAllocate(t *testing.T) {
	for _, name := range []string{RoundRobin, WeightedRoundRobin, LeastConn, SourceHash, RandomTwo, FastestResponse} {
		p := NewPool(testServers(1, 2, 3, 4, 1, 2, 3, 4), mustBalancer(t, name))
		p.Pick(testClient, nil)
		if a := testing.AllocsPerRun(1000, func() { p.Pick(testClient, nil) }); a != 0 {
			t.Errorf("%s: Pool.Pick allocates %v times, want 0", name, a)
		}
	}
}

func TestPoolConcurrent(t *testing.T) {
	// Health flaps and Refresh run while pickers pick, under -race. Server
	// a never goes down, so no pick may find the pool empty, and no pick
	// may return the excluded server.
	all := testServers(1, 1, 1, 1)
	p := NewPool(all, mustBalancer(t, LeastConn))
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			s := all[1+i%3]
			s.SetHealthy(i%2 == 0)
			if i%5 == 0 {
				s.SetAdmin(Draining)
			} else {
				s.SetAdmin(Enabled)
			}
			p.Refresh()
		}
	})
	var bad atomic.Int64
	var pickers sync.WaitGroup
	for g := range 8 {
		pickers.Go(func() {
			addr := netip.AddrFrom4([4]byte{10, 9, 0, byte(g)})
			for i := range 5000 {
				var ex *Server
				if i%3 == 0 {
					ex = all[1+i%3]
				}
				s := p.Pick(addr, ex)
				if s == nil || s == ex {
					bad.Add(1)
					continue
				}
				s.Acquire()
				s.Release()
				_ = p.Available()
			}
		})
	}
	pickers.Wait()
	stop.Store(true)
	wg.Wait()
	if n := bad.Load(); n != 0 {
		t.Errorf("%d picks returned nil or the excluded server", n)
	}
}
