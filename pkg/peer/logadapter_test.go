package peer

import (
	"context"
	"log"
	"log/slog"
	"sync"
	"testing"
)

type record struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

type recorder struct {
	mu  sync.Mutex
	got []record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	attrs := map[string]string{}
	rec.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, record{rec.Level, rec.Message, attrs})
	return nil
}

// The lines below are verbatim formats of memberlist v0.7.0.
func TestLogWriter(t *testing.T) {
	tests := []struct {
		line   string
		level  slog.Level
		msg    string
		peer   string
		reason string
	}{
		{"[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=127.0.0.1:7946",
			slog.LevelError, "Decrypt packet failed: no installed keys could decrypt the message", "127.0.0.1:7946", DropDecrypt},
		{`[ERR] memberlist: discarding packet with unacceptable label "x": from=127.0.0.1:1`,
			slog.LevelError, `discarding packet with unacceptable label "x"`, "127.0.0.1:1", DropLabel},
		{`[ERR] memberlist: discarding stream with unacceptable label "": from=127.0.0.1:2`,
			slog.LevelError, `discarding stream with unacceptable label ""`, "127.0.0.1:2", DropLabel},
		{"[ERR] memberlist: cannot decode label; packet has been truncated from=127.0.0.1:3",
			slog.LevelError, "cannot decode label; packet has been truncated", "127.0.0.1:3", DropLabel},
		{"[ERR] memberlist: failed to receive: no installed keys could decrypt the message from=127.0.0.1:4",
			slog.LevelError, "failed to receive: no installed keys could decrypt the message", "127.0.0.1:4", DropDecrypt},
		{"[ERR] memberlist: msg type (200) not supported from=127.0.0.1:5",
			slog.LevelError, "msg type (200) not supported", "127.0.0.1:5", DropOther},
		{"[ERR] memberlist: UDP packet too short (0 bytes) from=127.0.0.1:6",
			slog.LevelError, "UDP packet too short (0 bytes)", "127.0.0.1:6", DropOther},
		{"[WARN] memberlist: Got invalid checksum for UDP packet: 1, 2",
			slog.LevelWarn, "Got invalid checksum for UDP packet: 1, 2", "", DropOther},
		{"[WARN] memberlist: Refuting a suspect message (from: lb2)",
			slog.LevelWarn, "Refuting a suspect message (from: lb2)", "", ""},
		{"[INFO] memberlist: Marking lb2 as failed, suspect timeout reached (0 peer confirmations)",
			slog.LevelInfo, "Marking lb2 as failed, suspect timeout reached (0 peer confirmations)", "", ""},
		{"[DEBUG] memberlist: failed to join 127.0.0.1:9: no installed keys could decrypt the message",
			slog.LevelDebug, "failed to join 127.0.0.1:9: no installed keys could decrypt the message", "", ""},
		{"Err: Could not set the deadline: x", slog.LevelError, "Err: Could not set the deadline: x", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.msg, func(t *testing.T) {
			rec := &recorder{}
			var c counters
			logger := log.New(newLogWriter(slog.New(rec), &c), "", 0)
			logger.Print(tt.line)
			if len(rec.got) != 1 {
				t.Fatalf("got %d records", len(rec.got))
			}
			r := rec.got[0]
			if r.level != tt.level || r.msg != tt.msg || r.attrs["peer"] != tt.peer || r.attrs["reason"] != tt.reason {
				t.Fatalf("got %+v", r)
			}
			s := c.snapshot()
			var total uint64
			for _, n := range s.Dropped {
				total += n
			}
			if tt.reason == "" && total != 0 || tt.reason != "" && (s.Dropped[tt.reason] != 1 || total != 1) {
				t.Fatalf("drops %v, want one %q", s.Dropped, tt.reason)
			}
		})
	}
}

// A flood of one drop reason is counted in full but logged once per
// dropLogEvery.
func TestLogWriterRateLimits(t *testing.T) {
	rec := &recorder{}
	var c counters
	logger := log.New(newLogWriter(slog.New(rec), &c), "", 0)
	for range 100 {
		logger.Print("[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=127.0.0.1:7946")
	}
	logger.Print(`[ERR] memberlist: discarding packet with unacceptable label "x": from=127.0.0.1:1`)
	if got := c.snapshot().Dropped[DropDecrypt]; got != 100 {
		t.Fatalf("counted %d decrypt drops, want 100", got)
	}
	if len(rec.got) != 2 {
		t.Fatalf("logged %d lines, want 2 (one per reason): %+v", len(rec.got), rec.got)
	}
}
