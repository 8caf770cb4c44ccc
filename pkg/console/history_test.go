package console

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

func statusWith(servers ...api.Server) api.Status {
	return api.Status{Clusters: []api.Cluster{{Name: "web", Servers: servers}}}
}

func TestHistoryRatesAndGaps(t *testing.T) {
	h := NewHistory(4)
	t0 := time.Unix(1000, 0)
	at := t0
	checked := &at
	h.Sample(statusWith(api.Server{Name: "a", ActiveConns: 2, TotalConns: 10, LastCheckLatency: 3, LastCheckAt: checked}), t0)
	h.Sample(statusWith(api.Server{Name: "a", ActiveConns: 3, TotalConns: 16}, api.Server{Name: "b", TotalConns: 5}), t0.Add(2*time.Second))
	h.Sample(statusWith(api.Server{Name: "b", TotalConns: 9}), t0.Add(3*time.Second))

	times, conns := h.Window("web", MetricConns, []string{"a", "b"})
	if len(times) != 3 || !times[0].Equal(t0) {
		t.Fatalf("times %v", times)
	}
	if len(conns) != 2 || conns[0].Server != "a" || conns[0].Values[0] != 2 || conns[0].Values[1] != 3 || !math.IsNaN(conns[0].Values[2]) {
		t.Fatalf("conns of a: %+v", conns)
	}
	_, rate := h.Window("web", MetricRate, []string{"a", "b"})
	// a: no rate for its first sample, then 6 new over 2 s; b: 4 in 1 s.
	if !math.IsNaN(rate[0].Values[0]) || rate[0].Values[1] != 3 || rate[1].Values[2] != 4 || !math.IsNaN(rate[1].Values[1]) {
		t.Fatalf("rates: %+v", rate)
	}
	_, lat := h.Window("web", MetricLatency, nil)
	if lat[0].Values[0] != 3 || !math.IsNaN(lat[0].Values[1]) {
		t.Fatalf("latency (a server no longer listed still shown): %+v", lat)
	}
	// The ring keeps 4 samples; a, absent for 4 of them, is forgotten.
	for i := range 4 {
		h.Sample(statusWith(api.Server{Name: "b"}), t0.Add(time.Duration(4+i)*time.Second))
	}
	times, conns = h.Window("web", MetricConns, []string{"a", "b"})
	if len(times) != 4 || len(conns) != 1 || conns[0].Server != "b" {
		t.Fatalf("after the window: %d times, lines %+v", len(times), conns)
	}
}

func TestPlotSVG(t *testing.T) {
	now := time.Unix(5000, 0)
	times := []time.Time{now.Add(-2 * time.Second), now.Add(-time.Second), now}
	lines := []Line{{Server: "a<b>", Values: []float64{1, math.NaN(), 40}}, {Server: "c", Values: []float64{0, 0, 0}}}
	svg := PlotSVG("web: active connections", times, lines,
		[]Mark{{At: now.Add(-time.Second), Kind: "transition", Text: "BACKUP -> MASTER"}}, now)
	for _, want := range []string{"<svg", "a&lt;b&gt;", "<title>web: active connections</title>",
		`stroke-dasharray="6 3"`, "BACKUP -&gt; MASTER", ">50<", "now"} {
		if !strings.Contains(svg, want) {
			t.Errorf("plot lacks %q", want)
		}
	}
	// a's gap splits its line: two polylines for a (one point each
	// side), one for c, plus the legend's lines.
	if n := strings.Count(svg, "<polyline"); n != 3 {
		t.Errorf("%d polylines, want 3", n)
	}
	if strings.Contains(svg, "<b>") {
		t.Error("a server name reached the SVG unescaped")
	}
}
