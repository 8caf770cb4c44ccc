package main

import (
	"math"
	"slices"
	"time"
)

// SessionRecord is what one long-lived session saw, kept by its own
// goroutine and read once it has ended. A gap is the time between two
// answered lines (about the send interval when nothing happens).
type SessionRecord struct {
	Connected bool
	// Answers counts the lines echoed back.
	Answers int
	// LastAnswer is when the last echo arrived (zero before the first).
	LastAnswer time.Time
	// MaxGap is the longest closed gap; Stalls counts closed gaps over the
	// stall threshold.
	MaxGap time.Duration
	// MaxGapEnd is when the longest gap ended (its answer arrived).
	MaxGapEnd time.Time
	Stalls    int
	// Waiting: a line was sent and its echo had not arrived when the
	// session ended.
	Waiting bool
	// Err is the kind of failure ("" while the session is healthy):
	// connect, reset, eof, timeout, mismatch, or a short error text.
	Err      string
	FailedAt time.Time
}

// Answer records an echo arriving at t; stall is the gap above which the
// session counts as having stalled.
func (r *SessionRecord) Answer(t time.Time, stall time.Duration) {
	if !r.LastAnswer.IsZero() {
		g := t.Sub(r.LastAnswer)
		if g > r.MaxGap {
			r.MaxGap, r.MaxGapEnd = g, t
		}
		if g > stall {
			r.Stalls++
		}
	}
	r.Answers++
	r.LastAnswer = t
	r.Waiting = false
}

// Fail records the session's first failure.
func (r *SessionRecord) Fail(kind string, t time.Time) {
	if r.Err != "" {
		return
	}
	r.Err, r.FailedAt = kind, t
}

// SessionOpts are the thresholds of a summary.
type SessionOpts struct {
	// Stall: a gap longer than this is a stall [150ms].
	Stall time.Duration
	// Hang: a session still waiting for an echo this long after its last
	// answer when measuring ends has not survived ("hung") [1s].
	Hang time.Duration
}

// SessionsSummary is the JSON printed at the end of `labtools sessions`.
// Gap figures are over the survivors' longest gaps (one per session),
// nearest-rank percentiles, in ms.
type SessionsSummary struct {
	Sessions  int `json:"sessions"`
	Connected int `json:"connected"`
	// Survived: connected, never reset or errored, not hung at the end.
	Survived int `json:"survived"`
	Failed   int `json:"failed"`
	// Stalled: survivors with at least one gap over the stall threshold;
	// Stalls: all such gaps of the survivors.
	Stalled int            `json:"stalled"`
	Stalls  int            `json:"stalls"`
	Answers int            `json:"answers"`
	GapP50  float64        `json:"gap_p50_ms"`
	GapP99  float64        `json:"gap_p99_ms"`
	GapMax  float64        `json:"gap_max_ms"`
	Errors  map[string]int `json:"errors"`
	// FirstFailure and LastFailure are RFC3339Nano ("" with none).
	FirstFailure string  `json:"first_failure"`
	LastFailure  string  `json:"last_failure"`
	StallMS      float64 `json:"stall_ms"`
	// StallEnds are the stalled survivors' longest gaps' ends
	// (RFC3339Nano): the earliest, the median and the latest, so a
	// script can tell a stall caused by its fault from one before it.
	StallEndFirst string `json:"stall_end_first,omitempty"`
	StallEndP50   string `json:"stall_end_p50,omitempty"`
	StallEndLast  string `json:"stall_end_last,omitempty"`
	Start         string `json:"start"`
	End           string `json:"end"`
}

// SummarizeSessions judges the records at end, the instant measuring
// stopped. A session still waiting at end has an open gap (end minus its
// last answer): longer than opts.Hang it is a failure ("hung"), else it
// counts like a closed gap, so a stall still in progress is not missed.
func SummarizeSessions(recs []SessionRecord, start, end time.Time, opts SessionOpts) SessionsSummary {
	s := SessionsSummary{Sessions: len(recs), Errors: map[string]int{}, StallMS: ms(opts.Stall),
		Start: ts(start), End: ts(end)}
	var gaps []time.Duration
	var ends []time.Time
	var first, last time.Time
	fail := func(kind string, at time.Time) {
		s.Failed++
		s.Errors[kind]++
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	for _, r := range recs {
		s.Answers += r.Answers
		if r.Connected {
			s.Connected++
		}
		if r.Err != "" {
			fail(r.Err, r.FailedAt)
			continue
		}
		gap, stalls, gapEnd := r.MaxGap, r.Stalls, r.MaxGapEnd
		if r.Waiting && !r.LastAnswer.IsZero() {
			open := end.Sub(r.LastAnswer)
			if open > opts.Hang {
				fail("hung", r.LastAnswer)
				continue
			}
			if open > gap {
				gap, gapEnd = open, end
			}
			if open > opts.Stall {
				stalls++
			}
		}
		if r.Answers == 0 {
			// connected (or not) but never answered: nothing survived
			fail("unanswered", end)
			continue
		}
		s.Survived++
		s.Stalls += stalls
		if stalls > 0 {
			s.Stalled++
			if gap > opts.Stall {
				ends = append(ends, gapEnd)
			}
		}
		gaps = append(gaps, gap)
	}
	slices.Sort(gaps)
	s.GapP50 = ms(percentile(gaps, 0.50))
	s.GapP99 = ms(percentile(gaps, 0.99))
	if len(gaps) > 0 {
		s.GapMax = ms(gaps[len(gaps)-1])
	}
	if !first.IsZero() {
		s.FirstFailure, s.LastFailure = ts(first), ts(last)
	}
	if len(ends) > 0 {
		slices.SortFunc(ends, func(a, b time.Time) int { return a.Compare(b) })
		s.StallEndFirst, s.StallEndP50, s.StallEndLast = ts(ends[0]), ts(ends[(len(ends)-1)/2]), ts(ends[len(ends)-1])
	}
	return s
}

// percentile is the nearest-rank percentile of sorted values (0 if none).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
