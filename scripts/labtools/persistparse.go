package main

import (
	"bufio"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Tandem's side of `labtools persistreport`: the figures read from the
// output of the sticky benchmarks and of pkg/replicate's figures tests.

var benchLine = regexp.MustCompile(`^(Benchmark\w+)-\d+\s+\d+\s+(.*)`)

// parseBench gives each benchmark's median per unit over its runs (the
// units of its first run), and "runs".
func parseBench(r io.Reader) map[string]map[string]float64 {
	runs := map[string][]map[string]float64{}
	var order []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		vals := map[string]float64{}
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				vals[f[i+1]] = v
			}
		}
		if runs[m[1]] == nil {
			order = append(order, m[1])
		}
		runs[m[1]] = append(runs[m[1]], vals)
	}
	out := map[string]map[string]float64{}
	for _, name := range order {
		rs := runs[name]
		med := map[string]float64{"runs": float64(len(rs))}
		for u := range rs[0] {
			var v []float64
			for _, x := range rs {
				if y, ok := x[u]; ok {
					v = append(v, y)
				}
			}
			med[u] = *median(v)
		}
		out[name] = med
	}
	return out
}

// median of v (nil if empty), the mean of the middle two for an even count.
func median(v []float64) *float64 {
	if len(v) == 0 {
		return nil
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + m) / 2
	}
	return &m
}

var memLine = regexp.MustCompile(`IPv6=(\w+): ([\d.]+) bytes of heap per entry`)

// parseMem gives the heap bytes per entry, "ipv4" and "ipv6".
func parseMem(r io.Reader) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if m := memLine.FindStringSubmatch(sc.Text()); m != nil {
			k := "ipv4"
			if m[1] == "true" {
				k = "ipv6"
			}
			out[k], _ = strconv.ParseFloat(m[2], 64)
		}
	}
	return out
}

var goDur = regexp.MustCompile(`^([\d.]+)(ns|µs|us|ms|s)\b`)

// durMS reads a Go duration such as 1.5ms or 850µs as milliseconds.
func durMS(s string) float64 {
	m := goDur.FindStringSubmatch(s)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v * map[string]float64{"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1, "s": 1e3}[m[2]]
}

type replFigures struct {
	Throughput []throughputFig `json:"throughput"`
	Capacity   *float64        `json:"capacity,omitempty"`
	Lag        *lagFig         `json:"lag,omitempty"`
	Sustained  *sustainedFig   `json:"sustained,omitempty"`
	Bulk       *bulkFig        `json:"bulk,omitempty"`
	Failures   []string        `json:"failures"`
}

type throughputFig struct {
	Offered   int     `json:"offered"`
	Published float64 `json:"published"`
	Delivered float64 `json:"delivered"`
	P99MS     float64 `json:"p99_ms"`
	Discarded int     `json:"discarded"`
	KeptUp    bool    `json:"kept_up"`
}

type lagFig struct {
	Rate  int     `json:"rate"`
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
}

type sustainedFig struct {
	Offered   int     `json:"offered"`
	Delivered float64 `json:"delivered"`
}

type bulkFig struct {
	Entries                 int      `json:"entries"`
	MedianMS                float64  `json:"median_ms"`
	StartToReceivedMedianMS *float64 `json:"start_to_received_median_ms"`
}

var (
	figThroughput = regexp.MustCompile(`FIGURE throughput offered\s+(\d+)/s published\s+([\d.]+)/s delivered\s+([\d.]+)/s in (\S+): p50 (\S+) p99 (\S+) max (\S+), discarded (\d+), kept up: (\w+)`)
	figCapacity   = regexp.MustCompile(`FIGURE capacity (\d+) new entries in (\S+) = (\d+) entries/s`)
	figLag        = regexp.MustCompile(`FIGURE lag at (\d+) new entries/s.*p50 (\S+) p99 (\S+) max (\S+);`)
	figBulkRun    = regexp.MustCompile(`FIGURE bulk run \d+: (\d+) entries, connected → all applied (\S+) .*peer start → BulkReceived (\S+)`)
	figBulk       = regexp.MustCompile(`FIGURE bulk of (\d+) entries: median (\S+)`)
	testFailure   = regexp.MustCompile(`_test\.go:\d+: .*(>|want)`)
)

// parseFig reads the FIGURE lines of pkg/replicate's figures tests, and
// the lines where a test missed a goal.
func parseFig(r io.Reader) replFigures {
	f := replFigures{Throughput: []throughputFig{}, Failures: []string{}}
	var walls []float64
	atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
	atof := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if m := figThroughput.FindStringSubmatch(line); m != nil {
			f.Throughput = append(f.Throughput, throughputFig{Offered: atoi(m[1]), Published: atof(m[2]), Delivered: atof(m[3]),
				P99MS: durMS(m[6]), Discarded: atoi(m[8]), KeptUp: m[9] == "true"})
		}
		if m := figCapacity.FindStringSubmatch(line); m != nil {
			v := atof(m[3])
			f.Capacity = &v
		}
		if m := figLag.FindStringSubmatch(line); m != nil {
			f.Lag = &lagFig{Rate: atoi(m[1]), P50MS: durMS(m[2]), P99MS: durMS(m[3]), MaxMS: durMS(m[4])}
		}
		if m := figBulkRun.FindStringSubmatch(line); m != nil {
			walls = append(walls, durMS(m[3]))
		}
		if m := figBulk.FindStringSubmatch(line); m != nil {
			f.Bulk = &bulkFig{Entries: atoi(m[1]), MedianMS: durMS(m[2])}
		}
		if testFailure.MatchString(line) {
			f.Failures = append(f.Failures, strings.TrimSpace(line))
		}
	}
	for _, x := range f.Throughput {
		if x.KeptUp && (f.Sustained == nil || x.Offered > f.Sustained.Offered) {
			f.Sustained = &sustainedFig{Offered: x.Offered, Delivered: x.Delivered}
		}
	}
	if f.Bulk != nil {
		f.Bulk.StartToReceivedMedianMS = median(walls)
	}
	return f
}
