package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// run builds results from a pattern: one character per probe, 10 ms apart;
// a letter is a success from that server ("a" -> "lba"), '.' a failure.
func run(pattern string) []Result {
	var rs []Result
	for i, c := range pattern {
		r := Result{Seq: i, At: t0.Add(time.Duration(i) * 10 * time.Millisecond)}
		if c == '.' {
			r.Err = "timeout"
		} else {
			r.OK, r.Server = true, "lb"+string(c)
		}
		rs = append(rs, r)
	}
	return rs
}

func at(i int) time.Time { return t0.Add(time.Duration(i) * 10 * time.Millisecond) }

func TestSummarize(t *testing.T) {
	cases := []struct {
		name    string
		pattern string
		ok      int
		outages []Outage
		servers map[string]int
	}{
		{"empty", "", 0, nil, map[string]int{}},
		{"all ok", "1111", 4, nil, map[string]int{"lb1": 4}},
		{"one outage", "11...22", 4,
			[]Outage{{Start: at(2), End: at(5), Failed: 3}},
			map[string]int{"lb1": 2, "lb2": 2}},
		{"single failure", "1.1", 2,
			[]Outage{{Start: at(1), End: at(2), Failed: 1}},
			map[string]int{"lb1": 2}},
		{"two outages", "1..2.1", 3,
			[]Outage{{Start: at(1), End: at(3), Failed: 2}, {Start: at(4), End: at(5), Failed: 1}},
			map[string]int{"lb1": 2, "lb2": 1}},
		{"starts failing", "..1", 1,
			[]Outage{{Start: at(0), End: at(2), Failed: 2}},
			map[string]int{"lb1": 1}},
		{"ends failing", "1...", 1,
			[]Outage{{Start: at(1), End: at(3), Failed: 3, Open: true}},
			map[string]int{"lb1": 1}},
		{"switch without outage", "1122", 4, nil, map[string]int{"lb1": 2, "lb2": 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := Summarize(run(c.pattern))
			if s.Probes != len(c.pattern) || s.OK != c.ok || s.Failed != len(c.pattern)-c.ok {
				t.Fatalf("counts: probes %d ok %d failed %d", s.Probes, s.OK, s.Failed)
			}
			if len(s.Outages) != len(c.outages) {
				t.Fatalf("outages: got %+v want %+v", s.Outages, c.outages)
			}
			for i, o := range s.Outages {
				w := c.outages[i]
				if !o.Start.Equal(w.Start) || !o.End.Equal(w.End) || o.Failed != w.Failed || o.Open != w.Open {
					t.Errorf("outage %d: got %+v want %+v", i, o, w)
				}
			}
			if len(s.Servers) != len(c.servers) {
				t.Fatalf("servers: got %v want %v", s.Servers, c.servers)
			}
			for k, v := range c.servers {
				if s.Servers[k] != v {
					t.Errorf("servers: got %v want %v", s.Servers, c.servers)
				}
			}
		})
	}
}

func TestOutageMS(t *testing.T) {
	s := Summarize(run("1.....1"))
	j := s.JSON()
	if len(j.Outages) != 1 || j.Outages[0].MS != 50 || j.Outages[0].Failed != 5 {
		t.Fatalf("got %+v", j.Outages)
	}
	if j.Outages[0].Start != "2026-01-01T00:00:00.01Z" {
		t.Fatalf("start %q", j.Outages[0].Start)
	}
}

func TestFilter(t *testing.T) {
	s := Summarize(run("1..1...1.1"))
	if len(s.Outages) != 3 {
		t.Fatalf("outages %+v", s.Outages)
	}
	if got := Filter(s.Outages, time.Time{}, at(4)); len(got) != 1 || !got[0].Start.Equal(at(1)) {
		t.Errorf("before: %+v", got)
	}
	if got := Filter(s.Outages, at(4), time.Time{}); len(got) != 2 || !got[0].Start.Equal(at(4)) {
		t.Errorf("after: %+v", got)
	}
	if got := Filter(s.Outages, at(2), at(8)); len(got) != 1 || !got[0].Start.Equal(at(4)) {
		t.Errorf("window: %+v", got)
	}
}

// The tracker's events, rebuilt by the outage command, give the same
// outages as Summarize.
func TestTrackerEventsRoundTrip(t *testing.T) {
	rs := run("11...22..2...")
	var buf bytes.Buffer
	tr := newTracker(&buf, &bytes.Buffer{})
	for _, r := range rs {
		tr.observe(r)
	}
	var evs []Event
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var e Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	kinds := []string{}
	for _, e := range evs {
		kinds = append(kinds, e.Event+":"+e.Server)
	}
	if got, want := strings.Join(kinds, " "), "ok:lb1 fail: ok:lb2 fail: ok:lb2 fail:"; got != want {
		t.Fatalf("events %q want %q", got, want)
	}
	outs, err := outagesFromEvents(evs)
	if err != nil {
		t.Fatal(err)
	}
	want := Summarize(rs).Outages
	if len(outs) != len(want) {
		t.Fatalf("got %+v want %+v", outs, want)
	}
	for i := range outs {
		if !outs[i].Start.Equal(want[i].Start) || outs[i].Open != want[i].Open {
			t.Errorf("%d: got %+v want %+v", i, outs[i], want[i])
		}
		if !want[i].Open && (!outs[i].End.Equal(want[i].End) || outs[i].Failed != want[i].Failed) {
			t.Errorf("%d: got %+v want %+v", i, outs[i], want[i])
		}
	}
	r := report(Filter(outs, at(5), time.Time{}))
	if r.Count != 2 || r.Failed != 2 || !r.Open || r.MaxMS != 20 {
		t.Errorf("report %+v", r)
	}
}

func TestSwitchEvent(t *testing.T) {
	var buf bytes.Buffer
	tr := newTracker(&buf, &bytes.Buffer{})
	for _, r := range run("1122") {
		tr.observe(r)
	}
	if !strings.Contains(buf.String(), `"event":"switch","seq":2,"server":"lb2","prev":"lb1"`) {
		t.Fatalf("no switch event: %s", buf.String())
	}
}
