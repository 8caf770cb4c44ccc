package dataplane

import (
	"net/netip"
	"testing"
	"time"
)

// benchServers is 8 servers of mixed weight, load and connect time, so
// the comparisons in least_conn, random_two and fastest_response do work.
func benchServers() []*Server {
	ss := testServers(1, 2, 3, 4, 1, 2, 3, 4)
	for i, s := range ss {
		s.active.Store(int64(i * 7 % 5))
		s.ObserveConnect(time.Duration(100+i*13%7) * time.Microsecond)
	}
	return ss
}

// benchClients varies the client per pick, as on a real listener.
func benchClients() []netip.Addr { return testClients(1024) }

func BenchmarkPick(b *testing.B) {
	for _, name := range []string{RoundRobin, WeightedRoundRobin, LeastConn, SourceHash, RandomTwo, FastestResponse} {
		b.Run(name, func(b *testing.B) {
			bal := mustBalancer(b, name)
			cands, cs := benchServers(), benchClients()
			bal.Pick(cs[0], cands)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				bal.Pick(cs[i&1023], cands)
				i++
			}
		})
	}
}

// BenchmarkPickParallel shows contention: the shared counter of round
// robin and least_conn, the mutex of smooth WRR.
func BenchmarkPickParallel(b *testing.B) {
	for _, name := range []string{RoundRobin, WeightedRoundRobin, LeastConn, SourceHash, RandomTwo, FastestResponse} {
		b.Run(name, func(b *testing.B) {
			bal := mustBalancer(b, name)
			cands, cs := benchServers(), benchClients()
			bal.Pick(cs[0], cands)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					bal.Pick(cs[i&1023], cands)
					i++
				}
			})
		})
	}
}

func BenchmarkPoolPick(b *testing.B) {
	for _, name := range []string{RoundRobin, LeastConn, SourceHash} {
		b.Run(name, func(b *testing.B) {
			p := NewPool(benchServers(), mustBalancer(b, name))
			cs := benchClients()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p.Pick(cs[i&1023], nil)
				i++
			}
		})
	}
	b.Run("exclude", func(b *testing.B) {
		ss := benchServers()
		p := NewPool(ss, mustBalancer(b, RoundRobin))
		b.ReportAllocs()
		for b.Loop() {
			p.Pick(testClient, ss[3])
		}
	})
}

func BenchmarkPoolRefresh(b *testing.B) {
	p := NewPool(benchServers(), mustBalancer(b, RoundRobin))
	b.ReportAllocs()
	for b.Loop() {
		p.Refresh()
	}
}
