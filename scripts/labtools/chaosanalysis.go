package main

// The chaos suite's pure logic: VIP hold intervals and their overlap
// (dual-hold), how long a dual hold outlived the moment both boxes heard
// each other, sticky clients that changed server, outages in a window and
// the verdict of a step. Unit-tested in chaosanalysis_test.go.

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Interval is [From, To).
type Interval struct {
	From, To time.Time
}

// Dur is the length of the interval (0 when empty or inverted).
func (iv Interval) Dur() time.Duration {
	if iv.To.Before(iv.From) {
		return 0
	}
	return iv.To.Sub(iv.From)
}

// AddrEvent is one line of `labtools vipwatch`: an address added to or
// removed from a box's interface, timestamped when netlink reported it.
type AddrEvent struct {
	At   time.Time `json:"at"`
	Box  string    `json:"box"`
	Addr string    `json:"addr"` // CIDR, e.g. 198.18.0.100/24
	Op   string    `json:"op"`   // add|del|ready
}

// HoldIntervals turns one box's events for one address into the intervals
// in which the box held it. Events must be in time order; an add while
// held or a del while not held is ignored (netlink repeats itself on
// address refreshes). A hold still open at end closes at end.
func HoldIntervals(evs []AddrEvent, box, addr string, end time.Time) []Interval {
	var out []Interval
	var open *time.Time
	for _, e := range evs {
		if e.Box != box || e.Addr != addr {
			continue
		}
		switch e.Op {
		case "add":
			if open == nil {
				t := e.At
				open = &t
			}
		case "del":
			if open != nil {
				out = append(out, Interval{From: *open, To: e.At})
				open = nil
			}
		}
	}
	if open != nil && end.After(*open) {
		out = append(out, Interval{From: *open, To: end})
	}
	return out
}

// Overlap returns the intersections of two sorted, disjoint interval lists.
func Overlap(a, b []Interval) []Interval {
	var out []Interval
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		from, to := later(a[i].From, b[j].From), earlier(a[i].To, b[j].To)
		if from.Before(to) {
			out = append(out, Interval{From: from, To: to})
		}
		if a[i].To.Before(b[j].To) {
			i++
		} else {
			j++
		}
	}
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// DualHolds is, for each address, when boxes a and b both held it.
func DualHolds(evs []AddrEvent, a, b string, addrs []string, end time.Time) map[string][]Interval {
	sorted := append([]AddrEvent(nil), evs...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].At.Before(sorted[j].At) })
	out := map[string][]Interval{}
	for _, addr := range addrs {
		out[addr] = Overlap(HoldIntervals(sorted, a, addr, end), HoldIntervals(sorted, b, addr, end))
	}
	return out
}

// Clip returns the parts of ivs inside [from, to).
func Clip(ivs []Interval, from, to time.Time) []Interval {
	return Overlap(ivs, []Interval{{From: from, To: to}})
}

// Total is the summed length of ivs.
func Total(ivs []Interval) time.Duration {
	var d time.Duration
	for _, iv := range ivs {
		d += iv.Dur()
	}
	return d
}

// HearSample is one poll of both nodes: did each see the other alive?
type HearSample struct {
	At   time.Time
	Hear bool
}

// HearIntervals turns samples (time order) into the intervals in which both
// boxes heard each other: from a sample that says so to the next that
// does not (or end).
func HearIntervals(ss []HearSample, end time.Time) []Interval {
	var out []Interval
	var open *time.Time
	for _, s := range ss {
		switch {
		case s.Hear && open == nil:
			t := s.At
			open = &t
		case !s.Hear && open != nil:
			out = append(out, Interval{From: *open, To: s.At})
			open = nil
		}
	}
	if open != nil && end.After(*open) {
		out = append(out, Interval{From: *open, To: end})
	}
	return out
}

// DualAfterHeard is the longest time a dual hold went on after both boxes
// heard each other: for each dual interval, from the first instant in it
// at which they heard each other to its end (the hold may have begun
// earlier, while they could not). Zero when they never heard each other
// during a dual hold.
func DualAfterHeard(dual, hear []Interval) time.Duration {
	var worst time.Duration
	for _, d := range dual {
		for _, h := range hear {
			from := later(d.From, h.From)
			if !from.Before(d.To) || !from.Before(h.To) {
				continue
			}
			// the first hearing instant inside d: the hold lasted
			// from there to its end, whatever hearing did later
			if x := d.To.Sub(from); x > worst {
				worst = x
			}
			break
		}
	}
	return worst
}

// LoadRec is one sticky client's request through a VIP.
type LoadRec struct {
	At     time.Time
	Client string // source address
	Proto  string // tcp|udp
	Server string // who answered; "" when the request failed
}

// StickyChange is a client answered by another server than its own.
type StickyChange struct {
	At       time.Time
	Client   string
	Proto    string
	From, To string
	// Excused: its own server was dead (killed by the suite) at some
	// point since the client's last answer from it, so moving was right
	// (the client may only see the move later, after failed requests);
	// not a loss.
	Excused bool
}

// StickyChanges walks each client's answers in time order. A client's
// server is the first that answered it; an answer from another server is
// a change (and the new server becomes its own). dead says whether a
// server was down at some time in [from, to].
func StickyChanges(recs []LoadRec, dead func(server string, from, to time.Time) bool) []StickyChange {
	sorted := append([]LoadRec(nil), recs...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].At.Before(sorted[j].At) })
	home := map[string]string{}
	last := map[string]time.Time{} // the last answer from home
	var out []StickyChange
	for _, r := range sorted {
		if r.Server == "" {
			continue
		}
		k := r.Proto + " " + r.Client
		h, ok := home[k]
		if !ok || h == r.Server {
			home[k], last[k] = r.Server, r.At
			continue
		}
		out = append(out, StickyChange{At: r.At, Client: r.Client, Proto: r.Proto, From: h, To: r.Server,
			Excused: dead != nil && dead(h, last[k], r.At)})
		home[k], last[k] = r.Server, r.At
	}
	return out
}

// DeadWindows answers "was server s down at t" from the suite's own
// kill/revive record, with a grace after the revive for clients whose
// request was already on its way.
type DeadWindows map[string][]Interval

// Dead reports whether s was down at some time in [from, to].
func (d DeadWindows) Dead(s string, from, to time.Time) bool {
	for _, iv := range d[s] {
		if !to.Before(iv.From) && from.Before(iv.To) {
			return true
		}
	}
	return false
}

// LostClients counts distinct clients (per protocol) with an unexcused
// change in [from, to).
func LostClients(ch []StickyChange, from, to time.Time) (lost, excused int) {
	l, e := map[string]bool{}, map[string]bool{}
	for _, c := range ch {
		if c.At.Before(from) || !c.At.Before(to) {
			continue
		}
		k := c.Proto + " " + c.Client
		if c.Excused {
			e[k] = true
		} else {
			l[k] = true
		}
	}
	return len(l), len(e)
}

// ProbeOutages summarises probe results (launch order, completed ones
// only) and keeps the outages that start in [from, to).
func ProbeOutages(rs []Result, from, to time.Time) (outs []Outage, failed int) {
	outs = Filter(Summarize(rs).Outages, from, to)
	for _, r := range rs {
		if !r.OK && !r.At.Before(from) && r.At.Before(to) {
			failed++
		}
	}
	return outs, failed
}

// MaxOutage is the longest of outs, and whether any was still open.
func MaxOutage(outs []Outage) (time.Duration, bool) {
	var m time.Duration
	open := false
	for _, o := range outs {
		if o.Duration() > m {
			m = o.Duration()
		}
		open = open || o.Open
	}
	return m, open
}

// Goals are the suite's targets.
type Goals struct {
	MaxOutage     time.Duration // any single event
	MaxPullOutage time.Duration // a cable pull with the second heartbeat path (0: not applied)
	MaxDualHeard  time.Duration // dual hold after both heard each other
}

// Row is one step of the suite, as printed and written out.
type Row struct {
	N         int       `json:"n"`
	Event     string    `json:"event"`  // pull|kill|flap|partition|hbcut|isolate|backend|baseline
	Target    string    `json:"target"` // lb1, lb2, be1, be2 or ""
	Role      string    `json:"role"`   // the target's role when the step began
	Detail    string    `json:"detail"` // e.g. "held 1.2s"
	Start     time.Time `json:"start"`
	FaultEnd  time.Time `json:"fault_end"`
	End       time.Time `json:"end"`
	Settled   bool      `json:"settled"`
	SettleMS  float64   `json:"settle_ms"` // from fault end to settled
	TCPOutMS  float64   `json:"tcp_outage_ms"`
	UDPOutMS  float64   `json:"udp_outage_ms"`
	OpenOut   bool      `json:"outage_open"`
	ProbeFail int       `json:"probes_failed"`
	Requests  int       `json:"requests"`
	ReqFail   int       `json:"requests_failed"`
	Lost      int       `json:"sticky_lost"`
	Rehomed   int       `json:"sticky_rehomed"` // moved off a dead backend
	DualMS    float64   `json:"dual_ms"`        // both boxes held a VIP, in total
	DualHeard float64   `json:"dual_after_heard_ms"`
	Moves     int       `json:"moves"` // transitions to MASTER on either node
	Expected  int       `json:"expected_moves"`
	Trans     []string  `json:"transitions"`
	Missed    []string  `json:"missed_goals"`
	Harness   []string  `json:"harness_errors,omitempty"` // a lab command failed
	// StallMS is the longest gap between two probe launches in the
	// window: well above the interval, the prober itself was starved of
	// CPU and its probes' timeouts may have fired late (the machine, not
	// necessarily the pair).
	StallMS float64 `json:"prober_stall_ms"`
}

// MaxLaunchGap is the longest time between consecutive launches in
// [from, to).
func MaxLaunchGap(rs []Result, from, to time.Time) time.Duration {
	var m time.Duration
	var prev time.Time
	for _, r := range rs {
		if r.At.Before(from) || !r.At.Before(to) {
			continue
		}
		if !prev.IsZero() && r.At.Sub(prev) > m {
			m = r.At.Sub(prev)
		}
		prev = r.At
	}
	return m
}

// Spurious is how many master changes the step had beyond those expected.
func (r Row) Spurious() int {
	if r.Moves > r.Expected {
		return r.Moves - r.Expected
	}
	return 0
}

// Judge fills Missed with every goal the row misses.
func (r *Row) Judge(g Goals, pullGoal bool) {
	r.Missed = nil
	worst := r.TCPOutMS
	if r.UDPOutMS > worst {
		worst = r.UDPOutMS
	}
	limit := g.MaxOutage
	if pullGoal && r.Event == "pull" && g.MaxPullOutage > 0 {
		limit = g.MaxPullOutage
	}
	if worst > msf(limit) {
		r.Missed = append(r.Missed, fmt.Sprintf("outage %.0fms > %s", worst, limit))
	}
	if r.OpenOut {
		r.Missed = append(r.Missed, "outage still open at the end of the step")
	}
	if r.Lost > 0 {
		r.Missed = append(r.Missed, fmt.Sprintf("%d sticky clients lost their server", r.Lost))
	}
	if r.DualHeard > msf(g.MaxDualHeard) {
		r.Missed = append(r.Missed, fmt.Sprintf("VIP on both boxes %.0fms after they heard each other > %s", r.DualHeard, g.MaxDualHeard))
	}
	if s := r.Spurious(); s > 0 {
		r.Missed = append(r.Missed, fmt.Sprintf("%d spurious transitions (%d to MASTER, %d expected)", s, r.Moves, r.Expected))
	}
	if r.Moves < r.Expected {
		r.Missed = append(r.Missed, fmt.Sprintf("missing transitions (%d to MASTER, %d expected)", r.Moves, r.Expected))
	}
	if !r.Settled {
		r.Missed = append(r.Missed, "pair did not settle (lb1 MASTER with the VIPs, lb2 BACKUP, in sync, servers up)")
	}
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ExpectedMoves is how many transitions to MASTER (on either node) a step
// should cause, by event and the role of its target when it began:
//
//	pull/plug of the master: 2 (the backup takes over; the master
//	  preempts back once plugged, in sync and, with link_holddown, stable)
//	pull/plug of the backup: 0
//	kill -9/restart of the master: 2 (take-over; preemption once back)
//	kill -9/restart of the backup: 0
//	flapping master link (10 changes in 5 s): 2 (one take-over at the first
//	  loss of carrier, one preemption once the link is stable, none between)
//	partition of the path between the boxes, second heartbeat path up: 0
//	heartbeat cut on a shared LAN (hb0 down, IPv4 between the boxes
//	  dropped, ARP passes): 0 (the backup sees the master still answering
//	  ARP for the VIPs and does not claim them)
//	isolate the master (carrier up): 2 (it loses its witness and steps
//	  down; the backup takes over; back on heal)
//	isolate the backup: 0 (it has no witness, so it may not claim)
//	backend kill/revive: 0
func ExpectedMoves(event, role string) int {
	master := role == "MASTER"
	switch event {
	case "pull", "kill", "isolate":
		if master {
			return 2
		}
		return 0
	case "flap":
		return 2
	}
	return 0
}

// FormatTable renders rows as a fixed-width text table (also valid
// markdown when md is true).
func FormatTable(rows []Row, md bool) string {
	head := []string{"#", "event", "target", "role", "detail", "tcp out ms", "udp out ms", "req failed", "probes failed", "sticky lost", "dual ms", "dual heard ms", "to-MASTER obs/exp", "spurious", "settle ms", "stall ms", "verdict"}
	var cells [][]string
	for _, r := range rows {
		verdict := "ok"
		if len(r.Missed) > 0 {
			verdict = "MISSED: " + strings.Join(r.Missed, "; ")
		}
		out := func(v float64) string {
			return fmt.Sprintf("%.0f", v)
		}
		tcp, udp := out(r.TCPOutMS), out(r.UDPOutMS)
		if r.OpenOut {
			tcp, udp = tcp+"+", udp+"+"
		}
		settle := fmt.Sprintf("%.0f", r.SettleMS)
		if !r.Settled {
			settle = "NO"
		}
		cells = append(cells, []string{
			fmt.Sprint(r.N), r.Event, r.Target, r.Role, r.Detail, tcp, udp,
			fmt.Sprintf("%d/%d", r.ReqFail, r.Requests), fmt.Sprint(r.ProbeFail),
			fmt.Sprint(r.Lost), fmt.Sprintf("%.1f", r.DualMS), fmt.Sprintf("%.1f", r.DualHeard),
			fmt.Sprintf("%d/%d", r.Moves, r.Expected), fmt.Sprint(r.Spurious()), settle, fmt.Sprintf("%.0f", r.StallMS), verdict,
		})
	}
	w := make([]int, len(head))
	for i, h := range head {
		w[i] = len(h)
	}
	for _, c := range cells {
		for i, v := range c {
			if i < len(c)-1 && len(v) > w[i] {
				w[i] = len(v)
			}
		}
	}
	var b strings.Builder
	line := func(c []string) {
		if md {
			b.WriteString("| " + strings.Join(c, " | ") + " |\n")
			return
		}
		for i, v := range c {
			if i == len(c)-1 {
				b.WriteString(v)
				break
			}
			fmt.Fprintf(&b, "%-*s  ", w[i], v)
		}
		b.WriteString("\n")
	}
	line(head)
	if md {
		sep := make([]string, len(head))
		for i := range sep {
			sep[i] = "---"
		}
		line(sep)
	}
	for _, c := range cells {
		line(c)
	}
	return b.String()
}
