package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unicode/utf8"
)

// `labtools persistreport` is the report of scripts/bench-persistence.sh:
// Tandem's figures from the outputs of its Go benchmarks and tests, and
// HAProxy's from the JSON of `labtools hapeers`, side by side as a table
// with the goals and the ratios, and as JSON with -out.

func cmdPersistReport(args []string) error {
	fs := flag.NewFlagSet("persistreport", flag.ContinueOnError)
	var a reportArgs
	fs.StringVar(&a.up0, "up0", "", "uptime before")
	fs.StringVar(&a.up1, "up1", "", "uptime after")
	fs.IntVar(&a.n, "n", 1000000, "entries of HAProxy's resync")
	fs.StringVar(&a.hpver, "hpver", "", "HAProxy's version")
	fs.StringVar(&a.src, "src", "", "what Tandem was built from")
	fs.StringVar(&a.out, "out", "", "write the report as JSON here")
	fs.StringVar(&a.bench, "bench", "", "output of the sticky benchmarks")
	fs.StringVar(&a.mem, "mem", "", "output of TestStickyMemoryPerEntry -v")
	fs.StringVar(&a.fig, "fig", "", "output of pkg/replicate's figures tests -v")
	fs.StringVar(&a.lag, "lag", "", "hapeers feed JSON, paced, with the peer")
	fs.StringVar(&a.insert, "insert", "", "hapeers feed JSON, unpaced, with the peer")
	fs.StringVar(&a.fill, "fill", "", "hapeers feed JSON, no peer up")
	fs.StringVar(&a.resync, "resync", "", "JSON list of hapeers wait results")
	fs.StringVar(&a.rss, "rss", "", "JSON of hp1's VmRSS before and after the fill")
	wantT := fs.Bool("want-tandem", false, "exit 1 without Tandem's figures")
	wantH := fs.Bool("want-haproxy", false, "exit 1 without HAProxy's figures")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if fs.NArg() != 0 || a.n < 1 {
		return usageError("no positional arguments; -n >= 1")
	}
	rep := buildReport(a)
	writePersistReport(os.Stdout, rep, a)
	if a.out != "" {
		j, err := json.MarshalIndent(rep, "", " ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(a.out, j, 0o644); err != nil {
			return err
		}
	}
	if *wantT && rep.Tandem == nil {
		return fmt.Errorf("no figures of Tandem")
	}
	if h := rep.HAProxy; *wantH && (h == nil || h.Insert == nil || h.Lag == nil || len(h.Resync) == 0 || h.RSS == nil) {
		return fmt.Errorf("figures of HAProxy missing")
	}
	return nil
}

type reportArgs struct {
	up0, up1, hpver, src, out                       string
	n                                               int
	bench, mem, fig, lag, insert, fill, resync, rss string
}

// persistReport is the JSON of the report.
type persistReport struct {
	UptimeBefore string         `json:"uptime_before"`
	UptimeAfter  string         `json:"uptime_after"`
	CPUs         int            `json:"cpus"`
	Tandem       *tandemFigures `json:"tandem"`
	HAProxy      *haFigures     `json:"haproxy"`
	Figures      []figureRow    `json:"figures"`
}

type tandemFigures struct {
	Source    string                        `json:"source"`
	Sticky    map[string]map[string]float64 `json:"sticky"`
	Memory    map[string]float64            `json:"memory"`
	Replicate replFigures                   `json:"replicate"`
}

type haFigures struct {
	Lag     *feedResult  `json:"lag,omitempty"`
	Insert  *feedResult  `json:"insert,omitempty"`
	Fill    *feedResult  `json:"fill,omitempty"`
	Resync  []waitResult `json:"resync,omitempty"`
	RSS     *rssFigures  `json:"rss,omitempty"`
	Version string       `json:"version"`
}

// rssFigures is hp1's memory before and after its fill (the script's).
type rssFigures struct {
	BeforeKiB     float64 `json:"before_kib"`
	AfterKiB      float64 `json:"after_kib"`
	Entries       int     `json:"entries"`
	BytesPerEntry float64 `json:"bytes_per_entry"`
}

type figureRow struct {
	Figure  string   `json:"figure"`
	Goal    string   `json:"goal"`
	Tandem  *float64 `json:"tandem"`
	HAProxy *float64 `json:"haproxy"`
	Unit    string   `json:"unit"`
	Ratio   *float64 `json:"ratio"`
}

// ---- the report

// readFile parses the file at path; an absent file reads as empty.
func readFile[T any](path string, parse func(io.Reader) T) T {
	f, err := os.Open(path)
	if err != nil {
		return parse(strings.NewReader(""))
	}
	defer f.Close()
	return parse(f)
}

// loadJSON decodes the JSON file at path into a new T; nil when absent
// or unreadable.
func loadJSON[T any](path string) *T {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	v := new(T)
	if json.Unmarshal(b, v) != nil {
		return nil
	}
	return v
}

func buildReport(a reportArgs) *persistReport {
	rep := &persistReport{UptimeBefore: a.up0, UptimeAfter: a.up1, CPUs: runtime.NumCPU()}
	if a.bench != "" {
		if _, err := os.Stat(a.bench); err == nil {
			rep.Tandem = &tandemFigures{Source: a.src, Sticky: readFile(a.bench, parseBench),
				Memory: readFile(a.mem, parseMem), Replicate: readFile(a.fig, parseFig)}
		}
	}
	h := &haFigures{Lag: loadJSON[feedResult](a.lag), Insert: loadJSON[feedResult](a.insert),
		Fill: loadJSON[feedResult](a.fill), RSS: loadJSON[rssFigures](a.rss), Version: a.hpver}
	if rs := loadJSON[[]waitResult](a.resync); rs != nil {
		h.Resync = *rs
	}
	if h.Lag != nil || h.Insert != nil || h.Fill != nil || h.RSS != nil || h.Resync != nil {
		rep.HAProxy = h
	}
	rep.Figures = figureRows(rep, a.n)
	return rep
}

// figureRows are the table's rows: figure, goal, Tandem, HAProxy, ratio.
func figureRows(rep *persistReport, n int) []figureRow {
	var st map[string]map[string]float64
	var mem map[string]float64
	var rp replFigures
	if t := rep.Tandem; t != nil {
		st, mem, rp = t.Sticky, t.Memory, t.Replicate
	}
	h := rep.HAProxy
	if h == nil {
		h = &haFigures{}
	}
	bench := func(name, unit string) *float64 {
		if v, ok := st[name][unit]; ok {
			return &v
		}
		return nil
	}
	val := func(v float64, ok bool) *float64 {
		if !ok {
			return nil
		}
		return &v
	}
	scale := 1e6 / float64(n)
	resync := func(f func(waitResult) float64) *float64 {
		var v []float64
		for _, x := range h.Resync {
			v = append(v, f(x)*1e3*scale)
		}
		return median(v)
	}
	scaled := ""
	if n != 1000000 {
		scaled = fmt.Sprintf(" (scaled from %d)", n)
	}
	mv, mok := mem["ipv4"]
	var sOff, sDel, lagP99, bulkStart, bulkMed *float64
	if rp.Sustained != nil {
		sOff, sDel = val(float64(rp.Sustained.Offered), true), val(rp.Sustained.Delivered, true)
	}
	if rp.Lag != nil {
		lagP99 = val(rp.Lag.P99MS, true)
	}
	if rp.Bulk != nil {
		bulkStart, bulkMed = rp.Bulk.StartToReceivedMedianMS, val(rp.Bulk.MedianMS, true)
	}
	var hpRSS, hpIns, hpLag *float64
	if h.RSS != nil {
		hpRSS = val(h.RSS.BytesPerEntry, true)
	}
	if h.Insert != nil {
		hpIns = val(h.Insert.Rate, true)
	}
	if h.Lag != nil && h.Lag.Peer != nil {
		hpLag = h.Lag.Peer.LagP99MS
	}
	rows := []figureRow{
		{"lookup at 1M, wall ns/op", "≤ 100", bench("BenchmarkStickyLookup", "ns/op"), nil, "ns", nil},
		{"lookup at 1M, cpu-ns/op", "≤ 100", bench("BenchmarkStickyLookup", "cpu-ns/op"), nil, "ns", nil},
		{"lookup allocs/op", "0", bench("BenchmarkStickyLookup", "allocs/op"), nil, "", nil},
		{"insert into 1M, wall ns/op", "≤ 300", bench("BenchmarkStickyTouch", "ns/op"), nil, "ns", nil},
		{"insert into 1M, cpu-ns/op", "≤ 300", bench("BenchmarkStickyTouch", "cpu-ns/op"), nil, "ns", nil},
		{"bytes/entry at 1M (T heap IPv4, H RSS)", "≤ 150", val(mv, mok), hpRSS, "B", nil},
		{"sustained new entries/s (H: CLI feed)", "≥ 500,000", sOff, hpIns, "/s", nil},
		{"  delivered/s at that offered rate", "–", sDel, nil, "/s", nil},
		{"replication capacity entries/s", "–", rp.Capacity, nil, "/s", nil},
		{"lag p99 at 20k/s, ms", "≤ 100", lagP99, hpLag, "ms", nil},
		{"bulk 1M: peer start → synced, ms" + scaled, "≤ 500", bulkStart,
			resync(func(x waitResult) float64 { return x.StartToSynced }), "ms", nil},
		{"bulk 1M: connected/CLI up → synced, ms" + scaled, "≤ 500", bulkMed,
			resync(func(x waitResult) float64 { return x.CLIToSynced }), "ms", nil},
	}
	for i, r := range rows {
		if r.Tandem != nil && r.HAProxy != nil && *r.HAProxy != 0 {
			// the ratio as printed, to two places
			v, _ := strconv.ParseFloat(fmt.Sprintf("%.2f", *r.Tandem / *r.HAProxy), 64)
			rows[i].Ratio = &v
		}
	}
	return rows
}

// fmtFig prints a figure: "–" when missing, thousands grouped from 1,000,
// else one decimal unless whole.
func fmtFig(v *float64) string {
	switch {
	case v == nil:
		return "–"
	case *v >= 1000 || *v <= -1000:
		s := strconv.FormatFloat(*v, 'f', 0, 64)
		neg := strings.HasPrefix(s, "-")
		s = strings.TrimPrefix(s, "-")
		for i := len(s) - 3; i > 0; i -= 3 {
			s = s[:i] + "," + s[i:]
		}
		if neg {
			s = "-" + s
		}
		return s
	case *v != float64(int64(*v)):
		return fmt.Sprintf("%.1f", *v)
	}
	return fmt.Sprintf("%.0f", *v)
}

func ptr(v float64) *float64 { return &v }

func orZero(v *float64) float64 {
	if v == nil {
		return 0
	}
	return *v
}

// writePersistReport prints the table and the notes under it.
func writePersistReport(w io.Writer, rep *persistReport, a reportArgs) {
	head := [5]string{"figure", "goal", "Tandem", "HAProxy peers", "ratio T/H"}
	tab := [][5]string{head}
	for _, r := range rep.Figures {
		ratio := "–"
		if r.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *r.Ratio)
		}
		tab = append(tab, [5]string{r.Figure, r.Goal, fmtFig(r.Tandem), fmtFig(r.HAProxy), ratio})
	}
	var width [5]int
	for _, r := range tab {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	fmt.Fprintln(w)
	for _, r := range tab {
		cells := make([]string, 5)
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i == 0 {
				cells[i] = c + pad
			} else {
				cells[i] = pad + c
			}
		}
		fmt.Fprintln(w, strings.Join(cells, "  "))
	}
	fmt.Fprintln(w)
	if t := rep.Tandem; t != nil {
		rp := t.Replicate
		var per []string
		for _, x := range rp.Throughput {
			not := ""
			if !x.KeptUp {
				not = " NOT kept up"
			}
			per = append(per, fmt.Sprintf("%dk/s → %.0fk/s p99 %.0f ms%s", int(float64(x.Offered)/1e3), x.Delivered/1e3, x.P99MS, not))
		}
		fmt.Fprintf(w, "Tandem measured from: %s\n", a.src)
		fmt.Fprintf(w, "Tandem replication per offered rate: %s\n", strings.Join(per, "; "))
		missed := strings.Join(rp.Failures, "; ")
		if missed == "" {
			missed = "none"
		}
		v6, ok := t.Memory["ipv6"]
		var v6p *float64
		if ok {
			v6p = &v6
		}
		fmt.Fprintf(w, "Tandem IPv6 heap per entry: %s B; goals missed by the Go tests: %s\n", fmtFig(v6p), missed)
	}
	if h := rep.HAProxy; h != nil {
		if ins := h.Insert; ins != nil {
			p := ins.Peer
			if p == nil {
				p = &peerResult{}
			}
			cpu := orZero(ins.HP1CPU)
			after, pace := "–", "did NOT keep pace"
			if p.CaughtUp {
				after = fmtFig(ptr(1e3 * orZero(p.CaughtUpAfterFed)))
				if orZero(p.CaughtUpAfterFed) < 0.1 {
					pace = "kept pace"
				}
			}
			var behind *float64
			if ins.Peer != nil {
				behind = ptr(float64(p.BehindWhenFed))
			}
			fmt.Fprintf(w, "HAProxy insert: %d entries fed into hp1 at %s/s (hp1 CPU %.2f s = %.1f µs/entry); hp2 behind by %s when the feed ended, caught up %s ms later: %s\n",
				ins.Count, fmtFig(&ins.Rate), cpu, 1e6*cpu/float64(ins.Count), fmtFig(behind), after, pace)
		}
		if lag := h.Lag; lag != nil {
			p := lag.Peer
			if p == nil {
				p = &peerResult{}
			}
			fmt.Fprintf(w, "HAProxy lag at %s/s: p50 %s ms p99 %s ms max %s ms (hp1 CLI answer → counted on hp2, 5 ms poll)\n",
				fmtFig(lag.OfferedRate), fmtFig(p.LagP50MS), fmtFig(p.LagP99MS), fmtFig(p.LagMaxMS))
		}
		if f := h.Fill; f != nil {
			fmt.Fprintf(w, "HAProxy fill of hp1 (no peer up): %d entries at %s/s\n", f.Count, fmtFig(&f.Rate))
		}
		if len(h.Resync) > 0 {
			var per []string
			for _, x := range h.Resync {
				per = append(per, fmt.Sprintf("%.0f ms (CLI up at %.0f ms, %.2fM entries/s, hp2 CPU %.2f s)",
					x.StartToSynced*1e3, x.StartToCLI*1e3, x.Rate/1e6, orZero(x.HP2CPU)))
			}
			fmt.Fprintf(w, "HAProxy resync of %d entries, per fresh start of hp2: %s\n", a.n, strings.Join(per, "; "))
		}
		if r := h.RSS; r != nil {
			fmt.Fprintf(w, "HAProxy hp1 VmRSS %d → %d KiB for %d entries\n", int(r.BeforeKiB), int(r.AfterKiB), r.Entries)
		}
	}
	fmt.Fprintf(w, "uptime before: %s\nuptime after:  %s\n", strings.TrimSpace(a.up0), strings.TrimSpace(a.up1))
	if _, rest, ok := strings.Cut(a.up0, "load average:"); ok {
		l, _, _ := strings.Cut(rest, ",")
		if la, err := strconv.ParseFloat(strings.TrimSpace(l), 64); err == nil && la > 0.5*float64(rep.CPUs) {
			fmt.Fprintf(w, "NOTE: the machine was loaded (1-min load %.2f on %d CPUs) by other jobs: wall-clock figures are pessimistic; cpu-ns/op is the benchmark's own CPU time\n", la, rep.CPUs)
		}
	}
}
