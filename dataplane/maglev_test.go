package dataplane

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

func backendsN(n int) []MaglevBackend {
	var out []MaglevBackend
	for i := range n {
		out = append(out, MaglevBackend{ID: fmt.Sprintf("s%d/198.19.1.%d:80", i, 21+i), Weight: 1})
	}
	return out
}

func shares(table []int, n int) []float64 {
	c := make([]float64, n)
	for _, b := range table {
		c[b]++
	}
	for i := range c {
		c[i] /= float64(len(table))
	}
	return c
}

func TestMaglevFillsEveryslotAndBalances(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 10, 40} {
		table := Maglev(backendsN(n), MaglevSize)
		if len(table) != MaglevSize {
			t.Fatalf("n=%d: table of %d entries, want %d", n, len(table), MaglevSize)
		}
		for i, b := range table {
			if b < 0 || b >= n {
				t.Fatalf("n=%d: slot %d -> %d, not a backend", n, i, b)
			}
		}
		for i, s := range shares(table, n) {
			if want := 1 / float64(n); math.Abs(s-want) > 0.02+float64(n)/MaglevSize {
				t.Errorf("n=%d: backend %d has %.3f of the slots, want about %.3f", n, i, s, want)
			}
		}
	}
	if Maglev(nil, MaglevSize) != nil {
		t.Error("no backends: want a nil table")
	}
}

func TestMaglevWeights(t *testing.T) {
	b := []MaglevBackend{{"a", 1}, {"b", 3}, {"c", 4}}
	s := shares(Maglev(b, MaglevSize), 3)
	for i, want := range []float64{1.0 / 8, 3.0 / 8, 4.0 / 8} {
		if math.Abs(s[i]-want) > 0.02 {
			t.Errorf("backend %s weight %d: share %.3f, want %.3f", b[i].ID, b[i].Weight, s[i], want)
		}
	}
}

// The table must be the same on both boxes whatever order their configs
// or health snapshots list the servers in.
func TestMaglevIndependentOfOrder(t *testing.T) {
	b := backendsN(5)
	t1 := Maglev(b, MaglevSize)
	rev := slices.Clone(b)
	slices.Reverse(rev)
	t2 := Maglev(rev, MaglevSize)
	for i := range t1 {
		if b[t1[i]].ID != rev[t2[i]].ID {
			t.Fatalf("slot %d: %s in one order, %s in the other", i, b[t1[i]].ID, rev[t2[i]].ID)
		}
	}
}

// When a server leaves, the flows of the others mostly stay: the slots
// that change hands are the leaver's plus a small disruption.
func TestMaglevMinimalDisruption(t *testing.T) {
	b := backendsN(5)
	before := Maglev(b, MaglevSize)
	after := Maglev(append(slices.Clone(b[:2]), b[3:]...), MaglevSize) // s2 leaves
	moved := 0
	for i := range before {
		was := b[before[i]].ID
		if was == b[2].ID {
			continue // the leaver's slots must move
		}
		now := append(slices.Clone(b[:2]), b[3:]...)[after[i]].ID
		if now != was {
			moved++
		}
	}
	if frac := float64(moved) / MaglevSize; frac > 0.05 {
		t.Errorf("%.1f%% of the remaining servers' slots moved when one of 5 left; want under 5%%", frac*100)
	}
}
