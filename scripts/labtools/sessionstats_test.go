package main

import (
	"reflect"
	"testing"
	"time"
)

var st0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func sat(msec int) time.Time { return st0.Add(time.Duration(msec) * time.Millisecond) }

// answered builds a record from the times (ms after st0) its echoes arrived.
func answered(stall time.Duration, times ...int) SessionRecord {
	var r SessionRecord
	r.Connected = true
	for _, m := range times {
		r.Answer(sat(m), stall)
	}
	return r
}

func TestSessionRecordAnswerGapsAndStalls(t *testing.T) {
	r := answered(150*time.Millisecond, 0, 100, 200, 510, 610, 770)
	if r.Answers != 6 {
		t.Errorf("answers = %d, want 6", r.Answers)
	}
	if r.MaxGap != 310*time.Millisecond {
		t.Errorf("max gap = %v, want 310ms", r.MaxGap)
	}
	if r.Stalls != 2 { // 310 and 160 are over 150; 100s are not
		t.Errorf("stalls = %d, want 2", r.Stalls)
	}
	if !r.LastAnswer.Equal(sat(770)) || r.Waiting {
		t.Errorf("last answer %v waiting %v", r.LastAnswer, r.Waiting)
	}
	// a gap of exactly the threshold is not a stall
	if r := answered(150*time.Millisecond, 0, 150); r.Stalls != 0 {
		t.Errorf("a 150 ms gap counted as a stall")
	}
}

func TestSessionRecordKeepsFirstFailure(t *testing.T) {
	var r SessionRecord
	r.Fail("reset", sat(5))
	r.Fail("eof", sat(9))
	if r.Err != "reset" || !r.FailedAt.Equal(sat(5)) {
		t.Errorf("got %q at %v, want the first failure (reset at 5ms)", r.Err, r.FailedAt)
	}
}

func TestSummarizeSessions(t *testing.T) {
	opts := SessionOpts{Stall: 150 * time.Millisecond, Hang: time.Second}
	end := sat(3000)
	steady := answered(opts.Stall, 0, 100, 200, 300)
	stalled := answered(opts.Stall, 0, 100, 409, 509)
	reset := answered(opts.Stall, 0, 100)
	reset.Fail("reset", sat(150))
	eof := answered(opts.Stall, 0)
	eof.Fail("eof", sat(420))
	// waiting at the end: 400 ms open gap counts as a stall and a gap
	openStall := answered(opts.Stall, 2400, 2500, 2600)
	openStall.Waiting = true
	// waiting 1.5 s at the end: hung
	hung := answered(opts.Stall, 0, 100, 1500)
	hung.Waiting = true
	neverConnected := SessionRecord{}
	neverConnected.Fail("connect", sat(50))
	silent := SessionRecord{Connected: true, Waiting: true} // connected, never answered

	tests := []struct {
		name string
		recs []SessionRecord
		want SessionsSummary
	}{
		{"empty", nil, SessionsSummary{}},
		{"all steady", []SessionRecord{steady, steady},
			SessionsSummary{Sessions: 2, Connected: 2, Survived: 2, Answers: 8, GapP50: 100, GapP99: 100, GapMax: 100}},
		{"a stall and failures",
			[]SessionRecord{steady, stalled, reset, eof, neverConnected},
			SessionsSummary{Sessions: 5, Connected: 4, Survived: 2, Failed: 3, Stalled: 1, Stalls: 1,
				Answers: 11, GapP50: 100, GapP99: 309, GapMax: 309,
				Errors:       map[string]int{"reset": 1, "eof": 1, "connect": 1},
				FirstFailure: ts(sat(50)), LastFailure: ts(sat(420)),
				// the stalled session's 309 ms gap ended at its answer at 409 ms
				StallEndFirst: ts(sat(409)), StallEndP50: ts(sat(409)), StallEndLast: ts(sat(409))}},
		{"open gaps at the end",
			[]SessionRecord{openStall, hung, silent},
			SessionsSummary{Sessions: 3, Connected: 3, Survived: 1, Failed: 2, Stalled: 1, Stalls: 1,
				Answers: 6, GapP50: 400, GapP99: 400, GapMax: 400,
				Errors:       map[string]int{"hung": 1, "unanswered": 1},
				FirstFailure: ts(sat(1500)), LastFailure: ts(end),
				// an open stall ends when measuring does
				StallEndFirst: ts(end), StallEndP50: ts(end), StallEndLast: ts(end)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SummarizeSessions(tt.recs, st0, end, opts)
			w := tt.want
			w.StallMS, w.Start, w.End = 150, ts(st0), ts(end)
			if w.Errors == nil {
				w.Errors = map[string]int{}
			}
			if !reflect.DeepEqual(got, w) {
				t.Errorf("got  %+v\nwant %+v", got, w)
			}
		})
	}
}

func TestPercentileNearestRank(t *testing.T) {
	var v []time.Duration
	for i := 1; i <= 200; i++ {
		v = append(v, time.Duration(i)*time.Millisecond)
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 100 * time.Millisecond}, {0.99, 198 * time.Millisecond}, {1, 200 * time.Millisecond}, {0, time.Millisecond}} {
		if got := percentile(v, tt.p); got != tt.want {
			t.Errorf("p%v = %v, want %v", tt.p, got, tt.want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing is not 0")
	}
}
