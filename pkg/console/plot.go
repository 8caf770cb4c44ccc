package console

import (
	"fmt"
	"html"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

// The plots are drawn here, as SVG, rather than in the browser with a
// charting library: nothing to vendor, audit and keep up to date, a few
// kilobytes per plot, the 30 minutes of history never leave the node as
// raw series, and the page's script stays small. An <img> cannot run
// script, so a server or cluster name can do no harm in it either.

const (
	plotW, plotH     = 640, 180
	padL, padR       = 48, 8
	padT, padB       = 26, 22
	legendRowHeight  = 16
	plotWindow       = HistoryLen * SampleEvery
	minPlotSpan      = 2 * time.Minute
	maxPlotMarkCount = 200
)

// Each server gets a colour and a dash pattern, so the lines differ
// without colour too.
var (
	plotColours = []string{"#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#a16207", "#0e7490", "#be123c", "#4d7c0f"}
	plotDashes  = []string{"", "6 3", "2 3", "8 3 2 3", "1 2", "10 4", "4 2 1 2", "12 2"}
)

var metricTitles = map[string]string{
	MetricConns:   "active connections",
	MetricRate:    "new connections per second",
	MetricLatency: "health-check latency, ms",
}

// Mark is a moment drawn across a plot: a transition (solid) or a health
// change (dotted).
type Mark struct {
	At   time.Time
	Kind string // transition or health
	Text string
}

// PlotSVG draws one metric of one cluster over the window ending at now.
func PlotSVG(title string, times []time.Time, lines []Line, marks []Mark, now time.Time) string {
	var b strings.Builder
	legendH := legendRowHeight * ((len(lines) + 3) / 4)
	h := plotH + legendH
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" font-family="sans-serif" font-size="11">`,
		plotW, h, plotW, h)
	fmt.Fprintf(&b, `<title>%s</title><rect width="100%%" height="100%%" fill="#fff"/>`, html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="%d" y="14" font-size="12" font-weight="bold">%s</text>`, padL, html.EscapeString(title))
	top := 0.0
	for _, l := range lines {
		for _, v := range l.Values {
			if !math.IsNaN(v) {
				top = max(top, v)
			}
		}
	}
	top = niceCeil(top)
	x0, x1 := float64(padL), float64(plotW-padR)
	y0, y1 := float64(plotH-padB), float64(padT)
	// The axis spans the history there is (at least minPlotSpan), up to
	// the whole window: a node up for a minute is not a sliver at the
	// right edge.
	span := plotWindow
	if len(times) > 0 {
		span = min(plotWindow, max(minPlotSpan, now.Sub(times[0])))
	}
	start := now.Add(-span)
	xOf := func(t time.Time) float64 {
		return x0 + (x1-x0)*float64(t.Sub(start))/float64(span)
	}
	yOf := func(v float64) float64 { return y0 - (y0-y1)*v/top }
	// grid and axes
	for i := 0; i <= 4; i++ {
		v := top * float64(i) / 4
		y := yOf(v)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#ddd"/>`, x0, y, x1, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, padL-4, y+4, fmtValue(v))
	}
	for i := 0; i <= 6; i++ {
		ago := span * time.Duration(6-i) / 6
		x := xOf(now.Add(-ago))
		label, anchor := fmtAgo(ago), "middle"
		if i == 6 {
			label, anchor = "now", "end"
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#eee"/>`, x, y1, x, y0)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="%s">%s</text>`, x, plotH-6, anchor, label)
	}
	// marks
	for i, mk := range marks {
		if i >= maxPlotMarkCount || mk.At.Before(start) || mk.At.After(now) {
			continue
		}
		x := xOf(mk.At)
		dash, letter := "", "T"
		if mk.Kind == "health" {
			dash, letter = ` stroke-dasharray="2 2"`, "H"
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#555"%s><title>%s</title></line>`,
			x, y1, x, y0, dash, html.EscapeString(mk.At.UTC().Format("15:04:05")+" "+mk.Text))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" font-size="9">%s</text>`, x, y1+8, letter)
	}
	// lines, broken where a value is missing
	for i, l := range lines {
		colour, dash := plotColours[i%len(plotColours)], plotDashes[i%len(plotDashes)]
		style := fmt.Sprintf(`fill="none" stroke="%s" stroke-width="1.5"`, colour)
		if dash != "" {
			style += fmt.Sprintf(` stroke-dasharray="%s"`, dash)
		}
		var pts []string
		flush := func() {
			if len(pts) > 0 {
				fmt.Fprintf(&b, `<polyline %s points="%s"/>`, style, strings.Join(pts, " "))
				pts = pts[:0]
			}
		}
		for j, v := range l.Values {
			if math.IsNaN(v) || j >= len(times) || times[j].Before(start) {
				flush()
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(times[j]), yOf(v)))
		}
		flush()
		// legend: a sample of the line and the name
		lx := float64(padL + (i%4)*150)
		ly := float64(plotH + legendRowHeight*(i/4) + 10)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" %s/>`, lx, ly-4, lx+24, ly-4, style)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">%s</text>`, lx+28, ly, html.EscapeString(l.Server))
	}
	if len(lines) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">no servers</text>`, plotW/2, plotH/2)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// fmtAgo labels a tick: "−25 min", "−20 s".
func fmtAgo(d time.Duration) string {
	if d >= 5*time.Minute {
		return fmt.Sprintf("−%d min", int(d.Round(time.Minute)/time.Minute))
	}
	return fmt.Sprintf("−%d s", int(d.Round(time.Second)/time.Second))
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func fmtValue(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2g", v)
}

// marks picks the transitions and health changes of the event log.
func marks(evs []api.Event) []Mark {
	var out []Mark
	for _, e := range evs {
		if e.Kind == "transition" || e.Kind == "health" {
			out = append(out, Mark{At: e.At, Kind: e.Kind, Text: e.Message})
		}
	}
	return out
}

// plot answers /plot/{conns|rate|latency}.svg?cluster=NAME.
func (c *Console) plot(w http.ResponseWriter, r *http.Request, _ User, _ session) {
	metric := strings.TrimSuffix(r.PathValue("metric"), ".svg")
	title, ok := metricTitles[metric]
	if !ok {
		http.NotFound(w, r)
		return
	}
	name := r.URL.Query().Get("cluster")
	var servers []string
	found := false
	for _, cl := range c.src.Status().Clusters {
		if cl.Name == name {
			found = true
			for _, s := range cl.Servers {
				servers = append(servers, s.Name)
			}
		}
	}
	if !found {
		http.NotFound(w, r)
		return
	}
	times, lines := c.hist.Window(name, metric, servers)
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(PlotSVG(name+": "+title, times, lines, marks(c.src.Events()), c.now())))
}
