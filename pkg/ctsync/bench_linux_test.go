package ctsync

import (
	"net/netip"
	"testing"
	"time"
)

// benchFlow is the i-th of up to 16M distinct DNATed TCP flows.
func benchFlow(i int) Flow {
	f := dnatFlow()
	f.Orig.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 16), byte(i >> 8)}), 1024+uint16(i&0xff))
	f.Reply.Dst = f.Orig.Src
	return f
}

func benchTable(b *testing.B, tag string) *Table {
	l := newLab(b, tag)
	ns := l.ns("box")
	nft(b, ns, natRuleset)
	return openTable(b, ns)
}

// BenchmarkWrite creates entries (NAT binding included), one per
// iteration: run with -benchtime=100000x for the 100,000-entry figure.
func BenchmarkWrite(b *testing.B) {
	tb := benchTable(b, "bw")
	i := 0
	start := time.Now()
	for b.Loop() {
		if err := tb.Write(benchFlow(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/time.Since(start).Seconds(), "entries/s")
}

// BenchmarkWriteUpdate writes flows that exist already: the backup's
// common case (state and timeout changes).
func BenchmarkWriteUpdate(b *testing.B) {
	tb := benchTable(b, "bu")
	const n = 1000
	for i := range n {
		if err := tb.Write(benchFlow(i)); err != nil {
			b.Fatal(err)
		}
	}
	i := 0
	start := time.Now()
	for b.Loop() {
		f := benchFlow(i % n)
		f.Timeout = uint32(1000 + i)
		if err := tb.Write(f); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/time.Since(start).Seconds(), "entries/s")
}

// BenchmarkDump100k dumps a table of 100,000 Tandem entries.
func BenchmarkDump100k(b *testing.B) {
	const n = 100000
	tb := benchTable(b, "bd")
	for i := range n {
		if err := tb.Write(benchFlow(i)); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	dumps := 0
	for b.Loop() {
		got := 0
		if err := tb.Dump(0x7a000000, tandem, func(Flow) bool { got++; return true }); err != nil {
			b.Fatal(err)
		}
		if got != n {
			b.Fatalf("dumped %d, want %d", got, n)
		}
		dumps++
	}
	b.ReportMetric(float64(dumps*n)/time.Since(start).Seconds(), "entries/s")
}
