package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

// The chaos suite's report: each step's row measured from what the load,
// the VIP watchers and the status polls recorded, the table and the
// totals, and the files a failure needs for diagnosis.

// finishRow measures the row's window, judges it and prints it. The
// report measures every row again once the load has stopped, when every
// probe and request has completed (an outage running past a step's end is
// then measured whole).
func (d *driver) finishRow(row *Row, g Goals, pullGoal bool) {
	row.Moves, row.Trans = d.transitions(row.Start, row.End)
	d.rows = append(d.rows, *row)
	r := d.measure(len(d.rows)-1, g, pullGoal)
	d.say("row: %s", strings.TrimSpace(strings.SplitN(FormatTable([]Row{r}, false), "\n", 2)[1]))
}

// measure computes row i's figures from the probes, requests, VIP events
// and hearing samples recorded so far, and judges it.
func (d *driver) measure(i int, g Goals, pullGoal bool) Row {
	row := d.rows[i]
	from, to := row.Start, row.End
	tcpRs, udpRs := d.ld.tcpProbe.completed(), d.ld.udpProbe.completed()
	tcpOuts, tcpFail := ProbeOutages(tcpRs, from, to)
	udpOuts, udpFail := ProbeOutages(udpRs, from, to)
	row.StallMS = msf(max(MaxLaunchGap(tcpRs, from, to), MaxLaunchGap(udpRs, from, to)))
	tm, to1 := MaxOutage(tcpOuts)
	um, to2 := MaxOutage(udpOuts)
	row.TCPOutMS, row.UDPOutMS, row.OpenOut = msf(tm), msf(um), to1 || to2
	row.ProbeFail = tcpFail + udpFail

	recs := d.ld.records()
	row.Requests, row.ReqFail = 0, 0
	for _, r := range recs {
		if !r.At.Before(from) && r.At.Before(to) {
			row.Requests++
			if r.Server == "" {
				row.ReqFail++
			}
		}
	}
	d.mu.Lock()
	dead := d.dead
	evs := append([]AddrEvent(nil), d.vipEvs...)
	hear := HearIntervals(d.hear, to)
	d.mu.Unlock()
	changes := StickyChanges(recs, dead.Dead)
	row.Lost, row.Rehomed = LostClients(changes, from, to)

	row.DualMS, row.DualHeard = 0, 0
	for _, ivs := range DualHolds(evs, "lb1", "lb2", vipCIDRs, to) {
		c := Clip(ivs, from, to)
		if v := msf(Total(c)); v > row.DualMS {
			row.DualMS = v
		}
		if v := msf(DualAfterHeard(c, hear)); v > row.DualHeard {
			row.DualHeard = v
		}
	}
	harness := row.Harness
	row.Judge(g, pullGoal)
	row.Missed = append(harness, row.Missed...)
	d.rows[i] = row
	return row
}

// transitions lists both nodes' transitions in [from, to) and counts
// those to MASTER.
func (d *driver) transitions(from, to time.Time) (int, []string) {
	type tr struct {
		at   time.Time
		text string
		m    bool
	}
	var all []tr
	for _, b := range []string{"lb1", "lb2"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := api.NewClient(filepath.Join(d.o.out, b+".sock")).Status(ctx)
		cancel()
		if err != nil {
			all = append(all, tr{at: to, text: b + ": status unreachable"})
			continue
		}
		for _, t := range st.Transitions {
			if t.At.Before(from) || !t.At.Before(to) {
				continue
			}
			all = append(all, tr{at: t.At, m: t.To == "MASTER",
				text: fmt.Sprintf("%s %s %s->%s (%s)", t.At.Local().Format("15:04:05.000"), b, t.From, t.To, t.Reason)})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
	n := 0
	var out []string
	for _, t := range all {
		if t.m {
			n++
		}
		out = append(out, t.text)
	}
	return n, out
}

// report prints the table and the totals, writes them out, and returns an
// error when a goal was missed.
func (d *driver) report(g Goals, pullGoal bool) error {
	for i := range d.rows {
		d.measure(i, g, pullGoal)
	}
	rows := d.rows
	var sum struct {
		Seed        uint64   `json:"seed"`
		Features    []string `json:"features"`
		Steps       int      `json:"steps"`
		Missed      int      `json:"steps_missing_a_goal"`
		WorstOutMS  float64  `json:"worst_outage_ms"`
		WorstEvent  string   `json:"worst_outage_event"`
		Requests    int      `json:"requests"`
		ReqFailed   int      `json:"requests_failed"`
		ProbeFailed int      `json:"probes_failed"`
		Lost        int      `json:"sticky_lost"`
		Rehomed     int      `json:"sticky_rehomed_off_dead_backend"`
		DualMS      float64  `json:"dual_ms_total"`
		DualHeard   float64  `json:"dual_after_heard_ms_worst"`
		Spurious    int      `json:"spurious_transitions"`
		Missing     int      `json:"missing_transitions"`
		Unsettled   int      `json:"steps_not_settled"`
		Seconds     float64  `json:"seconds"`
	}
	sum.Seed, sum.Features, sum.Steps = d.o.seed, keys(d.features), len(rows)
	for _, r := range rows {
		if len(r.Missed) > 0 {
			sum.Missed++
		}
		for _, v := range []float64{r.TCPOutMS, r.UDPOutMS} {
			if v > sum.WorstOutMS {
				sum.WorstOutMS, sum.WorstEvent = v, fmt.Sprintf("#%d %s %s", r.N, r.Event, r.Target)
			}
		}
		sum.Requests += r.Requests
		sum.ReqFailed += r.ReqFail
		sum.ProbeFailed += r.ProbeFail
		sum.Lost += r.Lost
		sum.Rehomed += r.Rehomed
		sum.DualMS += r.DualMS
		if r.DualHeard > sum.DualHeard {
			sum.DualHeard = r.DualHeard
		}
		sum.Spurious += r.Spurious()
		if r.Moves < r.Expected {
			sum.Missing += r.Expected - r.Moves
		}
		if !r.Settled {
			sum.Unsettled++
		}
	}
	sum.Seconds = time.Since(d.start).Seconds()

	table := FormatTable(rows, false)
	var b strings.Builder
	fmt.Fprintf(&b, "\nchaos: seed %d, features %v, %d steps in %.0fs\n\n", sum.Seed, sum.Features, sum.Steps, sum.Seconds)
	b.WriteString(table)
	fmt.Fprintf(&b, "\ntotals: worst outage %.0f ms (%s); failed requests %d of %d, failed probes %d; sticky clients lost %d (moved off a killed backend %d); "+
		"VIP on both boxes %.1f ms in all, worst %.1f ms after they heard each other; spurious transitions %d, missing %d; steps not settled %d\n",
		sum.WorstOutMS, sum.WorstEvent, sum.ReqFailed, sum.Requests, sum.ProbeFailed, sum.Lost, sum.Rehomed,
		sum.DualMS, sum.DualHeard, sum.Spurious, sum.Missing, sum.Unsettled)
	for _, r := range rows {
		if len(r.Missed) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n#%d %s %s (%s) missed: %s\n", r.N, r.Event, r.Target, r.Detail, strings.Join(r.Missed, "; "))
		for _, t := range r.Trans {
			fmt.Fprintf(&b, "    %s\n", t)
		}
	}
	verdict := fmt.Sprintf("\nchaos: every goal met in %d steps\n", sum.Steps)
	if sum.Missed > 0 {
		verdict = fmt.Sprintf("\nchaos: %d of %d steps missed a goal (details above; logs in %s)\n", sum.Missed, sum.Steps, d.o.out)
	}
	b.WriteString(verdict)
	fmt.Print(b.String())

	os.WriteFile(filepath.Join(d.o.out, "table.txt"), []byte(b.String()), 0o644)
	md := fmt.Sprintf("# Chaos run, seed %d\n\nfeatures: %v\n\n%s\n%s", sum.Seed, sum.Features, FormatTable(rows, true), verdict)
	os.WriteFile(filepath.Join(d.o.out, "table.md"), []byte(md), 0o644)
	j, _ := json.MarshalIndent(struct {
		Summary any   `json:"summary"`
		Rows    []Row `json:"rows"`
	}{sum, rows}, "", "  ")
	os.WriteFile(filepath.Join(d.o.out, "table.json"), j, 0o644)
	d.writeDetails()
	if sum.Missed > 0 || len(rows) == 0 {
		return errGoalsMissed
	}
	return nil
}

var errGoalsMissed = errors.New("goals missed")

// writeDetails keeps what a failure needs for diagnosis: sticky changes,
// failed requests and both nodes' event timelines.
func (d *driver) writeDetails() {
	recs := d.ld.records()
	f, err := os.Create(filepath.Join(d.o.out, "sticky-changes.txt"))
	if err == nil {
		for _, c := range StickyChanges(recs, d.dead.Dead) {
			fmt.Fprintf(f, "%s %s %s %s -> %s excused=%v\n", c.At.Format("15:04:05.000"), c.Proto, c.Client, c.From, c.To, c.Excused)
		}
		f.Close()
	}
	if f, err = os.Create(filepath.Join(d.o.out, "failed-requests.txt")); err == nil {
		for _, r := range recs {
			if r.Server == "" {
				fmt.Fprintf(f, "%s %s %s\n", r.At.Format("15:04:05.000"), r.Proto, r.Client)
			}
		}
		f.Close()
	}
	for name, pl := range map[string]*probeLog{"tcp": d.ld.tcpProbe, "udp": d.ld.udpProbe} {
		s := Summarize(pl.completed()).JSON()
		j, _ := json.MarshalIndent(s, "", "  ")
		os.WriteFile(filepath.Join(d.o.out, "probe-"+name+".json"), j, 0o644)
	}
	out, _ := exec.Command(d.o.tandem, "events", "--socket", filepath.Join(d.o.out, "lb1.sock"),
		"--socket", filepath.Join(d.o.out, "lb2.sock"), "--last", "2000").CombinedOutput()
	os.WriteFile(filepath.Join(d.o.out, "events.txt"), out, 0o644)
}
