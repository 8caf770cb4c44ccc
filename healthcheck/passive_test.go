package healthcheck

import (
	"testing"
	"time"
)

// TestPassiveObserve walks the judge through runs of outcomes, each at
// an offset from t0, and asserts after which one it says "down".
func TestPassiveObserve(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type ev struct {
		at   time.Duration
		ok   bool
		what string
	}
	refused := func(at time.Duration) ev { return ev{at, false, "connects refused"} }
	tests := []struct {
		name       string
		fail       int
		window     time.Duration
		evs        []ev
		downAt     int // index of the event that says down, -1 for none
		wantReason string
	}{
		{"three refused", 3, time.Second, []ev{refused(0), refused(10 * time.Millisecond), refused(20 * time.Millisecond)},
			2, "passive: 3 connects refused"},
		{"two are not enough", 3, time.Second, []ev{refused(0), refused(time.Millisecond)}, -1, ""},
		{"a success breaks the run", 3, time.Second,
			[]ev{refused(0), refused(1), {2, true, ""}, refused(3), refused(4)}, -1, ""},
		{"after a success the run starts over", 3, time.Second,
			[]ev{refused(0), {1, true, ""}, refused(2), refused(3), refused(4)}, 4, "passive: 3 connects refused"},
		{"too far apart", 3, time.Second,
			[]ev{refused(0), refused(600 * time.Millisecond), refused(1200 * time.Millisecond)}, -1, ""},
		{"the old ones leave the window", 3, time.Second,
			[]ev{refused(0), refused(1500 * time.Millisecond), refused(1600 * time.Millisecond), refused(1700 * time.Millisecond)},
			3, "passive: 3 connects refused"},
		{"exactly the window is in", 2, time.Second, []ev{refused(0), refused(time.Second)}, 1, "passive: 2 connects refused"},
		{"mixed kinds", 3, time.Second,
			[]ev{refused(0), {1, false, "resets before the first byte"}, refused(2)},
			2, "passive: 3 failures (2 connects refused, 1 resets before the first byte)"},
		{"fail 1", 1, time.Second, []ev{{0, false, "requests unanswered"}}, 0, "passive: 1 requests unanswered"},
		{"fail 0 counts as 1", 0, time.Second, []ev{refused(0)}, 0, "passive: 1 connects refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Passive{Fail: tt.fail, Window: tt.window}
			got := -1
			for i, e := range tt.evs {
				down, reason := p.Observe(e.ok, e.what, t0.Add(e.at))
				if down {
					if got >= 0 {
						t.Fatalf("down again at event %d", i)
					}
					got = i
					if reason != tt.wantReason {
						t.Errorf("reason %q, want %q", reason, tt.wantReason)
					}
				}
			}
			if got != tt.downAt {
				t.Errorf("down at event %d, want %d", got, tt.downAt)
			}
		})
	}
}

// TestPassiveRestarts: after a verdict, Fail more failures are needed.
func TestPassiveRestarts(t *testing.T) {
	p := Passive{Fail: 2, Window: time.Minute}
	t0 := time.Now()
	p.Observe(false, "x", t0)
	if down, _ := p.Observe(false, "x", t0); !down {
		t.Fatal("2 failures: not down")
	}
	if down, _ := p.Observe(false, "x", t0); down {
		t.Fatal("down again after one more failure")
	}
	if down, _ := p.Observe(false, "x", t0); !down {
		t.Fatal("2 new failures: not down")
	}
}
