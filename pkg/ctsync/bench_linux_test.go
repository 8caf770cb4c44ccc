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
	tb, _ := benchTableNS(b, tag)
	return tb
}

func benchTableNS(b *testing.B, tag string) (*Table, string) {
	l := newLab(b, tag)
	ns := l.ns("box")
	nft(b, ns, natRuleset)
	return openTable(b, ns), ns
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

// BenchmarkWriteBatch creates entries through WriteBatch, 256 a datagram;
// one iteration is one entry.
func BenchmarkWriteBatch(b *testing.B) {
	tb := benchTable(b, "bb")
	batch := make([]Flow, 0, batchSize)
	i := 0
	start := time.Now()
	for b.Loop() {
		batch = append(batch, benchFlow(i))
		i++
		if len(batch) == cap(batch) {
			if err := tb.WriteBatch(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := tb.WriteBatch(batch); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(i)/time.Since(start).Seconds(), "entries/s")
}

// BenchmarkUpdate applies update events to existing entries (Update:
// one round trip).
func BenchmarkUpdate(b *testing.B) {
	tb := benchTable(b, "bp")
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
		if err := tb.Update(f); err != nil {
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
	all := make([]Flow, n)
	for i := range all {
		all[i] = benchFlow(i)
	}
	if err := tb.WriteBatch(all); err != nil {
		b.Fatal(err)
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

// BenchmarkEventsFlush measures the event reader: 50,000 entries are
// flushed at once (conntrack -F, in the kernel) and their destroy events
// read by a consumer that keeps up; one iteration is one flush.
func BenchmarkEventsFlush(b *testing.B) {
	tb, ns := benchTableNS(b, "be")
	sysctl(b, ns, "net/netfilter/nf_conntrack_events", "1")
	const n = 50000
	all := make([]Flow, n)
	for i := range all {
		all[i] = benchFlow(i)
	}
	events, _ := startEvents(b, tb, 0x7a000000, tandem, 8192)
	var busy time.Duration
	flushes := 0
	for b.Loop() {
		b.StopTimer()
		created := make(chan struct{}) // their New events, read meanwhile
		go func() {
			defer close(created)
			for got := 0; got < n; {
				if (<-events).Type == New {
					got++
				}
			}
		}()
		if err := tb.WriteBatch(all); err != nil {
			b.Fatal(err)
		}
		<-created
		b.StartTimer()
		start := time.Now()
		done := make(chan struct{})
		go func() { defer close(done); in(b, ns, "conntrack", "-F") }()
		for got := 0; got < n; {
			ev := <-events
			switch ev.Type {
			case Overflow:
				b.Fatalf("overflow after %d events: %+v", got, tb.Stats())
			case Destroy:
				got++
			}
		}
		busy += time.Since(start)
		<-done
		flushes++
	}
	b.ReportMetric(float64(flushes*n)/busy.Seconds(), "events/s")
}
