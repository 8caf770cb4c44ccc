package main

import (
	"time"
)

// Result is the outcome of one probe, in launch order.
type Result struct {
	Seq    int       // launch order, from 0
	At     time.Time // when the probe was launched
	OK     bool      // a non-empty line was read within the timeout
	Server string    // the line read (trimmed), when OK
	Err    string    // why it failed, when not OK
}

// Outage is a run of failed probes: from the launch of the first failed
// probe to the launch of the first successful probe after it. An outage
// still going on when probing stopped is Open; its End is then the launch
// time of its last failed probe.
type Outage struct {
	Start  time.Time
	End    time.Time
	Failed int // failed probes in the outage
	Open   bool
}

// Duration of the outage.
func (o Outage) Duration() time.Duration { return o.End.Sub(o.Start) }

// Summary of a probe run.
type Summary struct {
	Probes  int
	OK      int
	Failed  int
	Outages []Outage
	Servers map[string]int // successful probes per responding name
}

// Summarize computes the summary of probe results given in launch order.
// A run that starts failing counts as an outage from its first probe.
func Summarize(rs []Result) Summary {
	s := Summary{Probes: len(rs), Servers: map[string]int{}, Outages: []Outage{}}
	var cur *Outage
	for _, r := range rs {
		if r.OK {
			s.OK++
			s.Servers[r.Server]++
			if cur != nil {
				cur.End = r.At
				s.Outages = append(s.Outages, *cur)
				cur = nil
			}
			continue
		}
		s.Failed++
		if cur == nil {
			cur = &Outage{Start: r.At}
		}
		cur.Failed++
		cur.End = r.At
	}
	if cur != nil {
		cur.Open = true
		s.Outages = append(s.Outages, *cur)
	}
	return s
}

// Filter keeps the outages that start in [after, before); a zero bound is
// no bound.
func Filter(outs []Outage, after, before time.Time) []Outage {
	out := []Outage{}
	for _, o := range outs {
		if !after.IsZero() && o.Start.Before(after) {
			continue
		}
		if !before.IsZero() && !o.Start.Before(before) {
			continue
		}
		out = append(out, o)
	}
	return out
}
