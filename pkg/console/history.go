package console

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

// HistoryLen is how many samples the plots keep: 30 minutes, one a
// second, in memory (a restarted node starts its plots afresh).
const HistoryLen = 30 * 60

// SampleEvery is the history's sampling period.
const SampleEvery = time.Second

// The plotted metrics.
const (
	MetricConns   = "conns"   // active connections per server
	MetricRate    = "rate"    // new connections per second per server
	MetricLatency = "latency" // last check's latency per server, ms
)

// History keeps the last HistoryLen samples of every server's
// connections, new connections per second and check latency in a ring.
// A server missing from a sample (not there yet, or removed by a reload)
// has no value (NaN) there; one missing for the whole window is
// forgotten. Safe for concurrent use.
type History struct {
	mu     sync.Mutex
	size   int
	at     []time.Time // ring, indexed by sample number % size
	n      int         // samples taken
	series map[seriesKey]*series
}

type seriesKey struct{ cluster, server string }

type series struct {
	vals      [3][]float64 // by metric: conns, rate, latency
	seen      int          // the last sample number it was in
	lastTotal uint64
	lastAt    time.Time
}

// NewHistory keeps size samples.
func NewHistory(size int) *History {
	return &History{size: size, at: make([]time.Time, size), series: map[seriesKey]*series{}}
}

// Sample records one status taken at now.
func (h *History) Sample(st api.Status, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := h.n % h.size
	h.at[i] = now
	for _, cl := range st.Clusters {
		for _, sv := range cl.Servers {
			k := seriesKey{cl.Name, sv.Name}
			s := h.series[k]
			if s == nil {
				s = &series{seen: -1}
				for m := range s.vals {
					s.vals[m] = nanSlice(h.size)
				}
				h.series[k] = s
			}
			rate := math.NaN()
			if !s.lastAt.IsZero() && s.seen == h.n-1 && sv.TotalConns >= s.lastTotal && now.After(s.lastAt) {
				rate = float64(sv.TotalConns-s.lastTotal) / now.Sub(s.lastAt).Seconds()
			}
			lat := math.NaN()
			if sv.LastCheckAt != nil {
				lat = sv.LastCheckLatency
			}
			s.vals[0][i], s.vals[1][i], s.vals[2][i] = float64(sv.ActiveConns), rate, lat
			s.seen, s.lastTotal, s.lastAt = h.n, sv.TotalConns, now
		}
	}
	for k, s := range h.series {
		if s.seen == h.n {
			continue
		}
		if h.n-s.seen >= h.size {
			delete(h.series, k)
			continue
		}
		for m := range s.vals {
			s.vals[m][i] = math.NaN()
		}
	}
	h.n++
}

func nanSlice(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = math.NaN()
	}
	return s
}

// Line is one server's values of a metric, oldest first, aligned with
// the times Window returns.
type Line struct {
	Server string
	Values []float64
}

// Window returns the sample times, oldest first, and one line per
// server of cluster for metric (in the order of servers, those no longer
// configured after them).
func (h *History) Window(cluster, metric string, servers []string) ([]time.Time, []Line) {
	m := map[string]int{MetricConns: 0, MetricRate: 1, MetricLatency: 2}[metric]
	h.mu.Lock()
	defer h.mu.Unlock()
	count := min(h.n, h.size)
	start := h.n - count
	times := make([]time.Time, count)
	for j := range count {
		times[j] = h.at[(start+j)%h.size]
	}
	var lines []Line
	add := func(name string, s *series) {
		l := Line{Server: name, Values: make([]float64, count)}
		for j := range count {
			l.Values[j] = s.vals[m][(start+j)%h.size]
		}
		lines = append(lines, l)
	}
	done := map[string]bool{}
	for _, name := range servers {
		if s := h.series[seriesKey{cluster, name}]; s != nil {
			add(name, s)
			done[name] = true
		}
	}
	var gone []string
	for k := range h.series {
		if k.cluster == cluster && !done[k.server] {
			gone = append(gone, k.server)
		}
	}
	slices.Sort(gone)
	for _, name := range gone {
		add(name, h.series[seriesKey{cluster, name}])
	}
	return times, lines
}

// Run samples src every SampleEvery until ctx ends.
func (h *History) Run(ctx context.Context, src Source, now func() time.Time) {
	t := time.NewTicker(SampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.Sample(src.Status(), now())
		}
	}
}
