package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func persistArgs() reportArgs {
	d := filepath.Join("testdata", "persist")
	p := func(f string) string { return filepath.Join(d, f) }
	return reportArgs{
		up0:   " 10:00:00 up 3 days,  2:00,  0 users,  load average: 1.31, 1.20, 1.10",
		up1:   " 10:05:00 up 3 days,  2:05,  0 users,  load average: 1.90, 1.40, 1.20",
		n:     1000000,
		hpver: "HAProxy version 2.6.12", src: "work tree at abc123",
		bench: p("bench.txt"), mem: p("mem.txt"), fig: p("fig.txt"),
		lag: p("lag.json"), insert: p("insert.json"), fill: p("fill.json"), resync: p("resync.json"), rss: p("rss.json"),
	}
}

// TestPersistReportAsBefore: the report of a sample run is, byte for
// byte, what the Python helper the script used to carry printed for the
// same files (testdata/persist/report.golden, on 2 CPUs).
func TestPersistReportAsBefore(t *testing.T) {
	a := persistArgs()
	rep := buildReport(a)
	rep.CPUs = 2
	var b bytes.Buffer
	writePersistReport(&b, rep, a)
	want, err := os.ReadFile(filepath.Join("testdata", "persist", "report.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("report:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestPersistReportFigures(t *testing.T) {
	rep := buildReport(persistArgs())
	st := rep.Tandem.Sticky["BenchmarkStickyLookup"]
	// three runs: 84.31, 77.02, 81.00 ns/op
	if st["ns/op"] != 81 || st["runs"] != 3 || st["allocs/op"] != 0 {
		t.Errorf("lookup: %v, want the median 81 ns/op of 3 runs", st)
	}
	// two runs: the mean of the middle two
	if v := rep.Tandem.Sticky["BenchmarkStickyTouch"]["ns/op"]; v != 245.5 {
		t.Errorf("touch: %v ns/op, want 245.5", v)
	}
	rp := rep.Tandem.Replicate
	if rp.Sustained == nil || rp.Sustained.Offered != 500000 || rp.Lag == nil || rp.Lag.P50MS != 0.85 ||
		rp.Bulk == nil || *rp.Bulk.StartToReceivedMedianMS != 172 || len(rp.Failures) != 2 {
		t.Errorf("replication: %+v", rp)
	}
	byName := map[string]figureRow{}
	for _, r := range rep.Figures {
		byName[strings.TrimSpace(r.Figure)] = r
	}
	if r := byName["bulk 1M: peer start → synced, ms"]; r.HAProxy == nil || *r.HAProxy != 413 || r.Ratio == nil || *r.Ratio != 0.42 {
		t.Errorf("bulk row: %+v, want HAProxy's median 413 ms and ratio 0.42", r)
	}
}

func TestPersistReportScalesAndCopesWithMissingFiles(t *testing.T) {
	a := persistArgs()
	a.n = 200000
	a.mem = filepath.Join(t.TempDir(), "absent")
	a.lag, a.insert = "", ""
	rep := buildReport(a)
	rep.CPUs = 8
	var b bytes.Buffer
	writePersistReport(&b, rep, a)
	out := b.String()
	for _, want := range []string{
		"bulk 1M: peer start → synced, ms (scaled from 200000)",
		"Tandem IPv6 heap per entry: – B",
		"HAProxy resync of 200000 entries",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "NOTE: the machine was loaded") || strings.Contains(out, "HAProxy lag at") {
		t.Errorf("a load note on 8 CPUs at load 1.31, or a lag line without its file:\n%s", out)
	}
	for _, r := range rep.Figures {
		// HAProxy's resync of 200,000 scaled to 1M: 413 ms × 5
		if strings.HasPrefix(r.Figure, "bulk 1M: peer start") && (r.HAProxy == nil || *r.HAProxy < 2064 || *r.HAProxy > 2066) {
			t.Errorf("scaled bulk: %v, want 2065", r.HAProxy)
		}
	}
}
