package healthcheck

import "testing"

func TestRiseFall(t *testing.T) {
	const (
		o = true
		x = false
	)
	tests := []struct {
		name    string
		healthy bool
		seq     []bool
		// want is the verdict after each result; changed marks the
		// results that flipped it.
		want    []bool
		changed []int
	}{
		{"healthy stays on passes", true, []bool{o, o, o}, []bool{o, o, o}, nil},
		{"two failures are not three", true, []bool{x, x, o, x, x}, []bool{o, o, o, o, o}, nil},
		{"three failures take it down", true, []bool{x, x, x, x}, []bool{o, o, x, x}, []int{2}},
		{"down needs two passes", false, []bool{o, x, o, o, o}, []bool{x, x, x, o, o}, []int{3}},
		{"unhealthy stays on failures", false, []bool{x, x, x, x}, []bool{x, x, x, x}, nil},
		{"flap down and up", true, []bool{x, x, x, o, o, x, x, x}, []bool{o, o, x, x, o, o, o, x}, []int{2, 4, 7}},
		{"a pass resets the failure run", true, []bool{x, x, o, x, x, o}, []bool{o, o, o, o, o, o}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := RiseFall{Rise: 2, Fall: 3, Healthy: tt.healthy}
			var changed []int
			for i, ok := range tt.seq {
				if r.Observe(ok) {
					changed = append(changed, i)
				}
				if r.Healthy != tt.want[i] {
					t.Errorf("after result %d (%v): healthy=%v, want %v", i, ok, r.Healthy, tt.want[i])
				}
			}
			if len(changed) != len(tt.changed) {
				t.Fatalf("changed at %v, want %v", changed, tt.changed)
			}
			for i := range changed {
				if changed[i] != tt.changed[i] {
					t.Fatalf("changed at %v, want %v", changed, tt.changed)
				}
			}
		})
	}
}

func TestRiseFallZeroThresholdsActAsOne(t *testing.T) {
	r := RiseFall{Healthy: true}
	if !r.Observe(false) || r.Healthy {
		t.Fatal("Fall 0 should take a server down on its first failure")
	}
	if !r.Observe(true) || !r.Healthy {
		t.Fatal("Rise 0 should bring a server up on its first pass")
	}
}

func TestRiseFallStart(t *testing.T) {
	r := RiseFall{Rise: 2, Fall: 2, Healthy: true}
	r.start(false)
	if r.Healthy {
		t.Fatal("a failed first result must start unhealthy")
	}
	if r.Observe(true) {
		t.Fatal("one pass after a failed start must not bring it up with rise 2")
	}
	if !r.Observe(true) || !r.Healthy {
		t.Fatal("two passes must bring it up")
	}
	r.start(true)
	if !r.Healthy || r.Observe(false) || !r.Observe(false) {
		t.Fatal("a passing start then fall 2 failures must take it down on the second")
	}
}
