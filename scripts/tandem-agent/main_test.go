package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLoadPercent(t *testing.T) {
	for _, tt := range []struct {
		loadavg string
		max     float64
		want    int
		ok      bool
	}{
		{"0.00 0.01 0.05 1/123 4567\n", 2, 0, true},
		{"0.20 0.01 0.05 1/123 4567\n", 2, 10, true},
		{"1.00 0.50 0.20 2/150 999\n", 2, 50, true},
		{"1.80 1.00 0.50 2/150 999\n", 2, 90, true},
		{"2.00 1.00 0.50 2/150 999\n", 2, 100, true},
		{"7.35 6.00 5.00 9/300 999\n", 2, 100, true}, // capped
		{"3.00 0 0 1/1 1\n", 8, 38, true},            // 37.5 rounds up
		{"", 2, 0, false},
		{"x 1 1 1/1 1", 2, 0, false},
		{"-1 1 1 1/1 1", 2, 0, false},
	} {
		got, err := loadPercent(tt.loadavg, tt.max)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("loadPercent(%q, %v) = %d, %v; want %d, ok %v", tt.loadavg, tt.max, got, err, tt.want, tt.ok)
		}
	}
}

func TestReply(t *testing.T) {
	dir := t.TempDir()
	la, drain := filepath.Join(dir, "loadavg"), filepath.Join(dir, "drain")
	if err := os.WriteFile(la, []byte("1.00 0.50 0.20 2/150 999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, ok := reply(la, drain, 4); got != 25 || !ok {
		t.Errorf("load 1.00 of 4: %d, %v; want 25", got, ok)
	}
	if err := os.WriteFile(drain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, ok := reply(la, drain, 4); got != -1 || !ok {
		t.Errorf("with the drain file: %d, %v; want -1", got, ok)
	}
	if got, ok := reply(filepath.Join(dir, "missing"), filepath.Join(dir, "nodrain"), 4); ok {
		t.Errorf("unreadable load average: %d, want no reply (Tandem keeps the configured weight)", got)
	}
}
