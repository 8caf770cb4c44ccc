package peer

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// memberlist logs through a *log.Logger with lines such as
//
//	[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=127.0.0.1:7946
//
// and drops bad packets after logging them. logWriter is the io.Writer
// behind that logger: it turns each line into a structured slog record at
// the matching level and counts the drops it describes, since the log line
// is the only signal memberlist gives.
type logWriter struct {
	log *slog.Logger
	c   *counters

	mu      sync.Mutex
	lastLog map[string]time.Time // per drop reason, for rate limiting
	muted   map[string]uint64    // drops not logged since lastLog
}

// dropLogEvery bounds how often one drop reason is logged: a peer with the
// wrong key sends an advert every 50ms and would otherwise flood the log.
const dropLogEvery = 10 * time.Second

// dropPatterns maps substrings of memberlist v0.7.0 messages (net.go,
// net_transport.go, security.go, label.go) to drop reasons; the first match wins.
var dropPatterns = []struct{ substr, reason string }{
	{"Decrypt packet failed", DropDecrypt},
	{"could decrypt the message", DropDecrypt},
	{"payload is too small to decrypt", DropDecrypt},
	{"unsupported encryption version", DropDecrypt},
	{"remote state is encrypted and encryption is not configured", DropDecrypt},
	{"encryption is configured but remote state is not encrypted", DropDecrypt},
	{"unacceptable label", DropLabel},
	{"cannot decode label", DropLabel},
	{"label header cannot be empty", DropLabel},
	{"double packet label header", DropLabel},
	{"double stream label header", DropLabel},
	{"UDP packet too short", DropOther},
	{"missing message type byte", DropOther},
	{"msg type (", DropOther},
	{"Message type (", DropOther},
	{"Received invalid msgType", DropOther},
	{"Got invalid checksum", DropOther},
	{"handler queue full", DropOther},
	{"Failed to decompress payload", DropOther},
	{"Failed to decode", DropOther},
	{"truncated messages", DropOther},
}

func newLogWriter(log *slog.Logger, c *counters) *logWriter {
	return &logWriter{log: log, c: c, lastLog: map[string]time.Time{}, muted: map[string]uint64{}}
}

// Write handles one log line (log.Logger writes each entry in one call).
// It never fails, so memberlist never sees a logging error.
func (w *logWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if line != "" {
			w.line(line)
		}
	}
	return len(p), nil
}

func (w *logWriter) line(line string) {
	level, msg := parseLevel(line)
	msg = strings.TrimPrefix(msg, "memberlist: ")
	var attrs []slog.Attr
	if i := strings.LastIndex(msg, " from="); i >= 0 {
		attrs = append(attrs, slog.String("peer", msg[i+len(" from="):]))
		msg = strings.TrimRight(msg[:i], ": ")
	}
	reason := classify(msg)
	if reason != "" && level >= slog.LevelWarn {
		w.c.drop(reason)
		attrs = append(attrs, slog.String("reason", reason))
		suppressed, ok := w.allow(reason, time.Now())
		if !ok {
			return
		}
		if suppressed > 0 {
			attrs = append(attrs, slog.Uint64("suppressed", suppressed))
		}
	}
	attrs = append(attrs, slog.String("component", "memberlist"))
	w.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// allow reports whether a drop of this reason may be logged now, and how
// many were silenced since the last one logged.
func (w *logWriter) allow(reason string, now time.Time) (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if last, ok := w.lastLog[reason]; ok && now.Sub(last) < dropLogEvery {
		w.muted[reason]++
		return 0, false
	}
	w.lastLog[reason] = now
	n := w.muted[reason]
	w.muted[reason] = 0
	return n, true
}

// parseLevel splits memberlist's "[LEVEL] " prefix off a line. Lines
// without one (memberlist has a few "Err: ..." lines) default to info, or
// error when they start with "Err".
func parseLevel(line string) (slog.Level, string) {
	if strings.HasPrefix(line, "[") {
		if end := strings.IndexByte(line, ']'); end > 0 {
			rest := strings.TrimPrefix(line[end+1:], " ")
			switch line[1:end] {
			case "DEBUG", "TRACE":
				return slog.LevelDebug, rest
			case "INFO":
				return slog.LevelInfo, rest
			case "WARN", "WARNING":
				return slog.LevelWarn, rest
			case "ERR", "ERROR":
				return slog.LevelError, rest
			}
		}
	}
	if strings.HasPrefix(line, "Err") {
		return slog.LevelError, line
	}
	return slog.LevelInfo, line
}

func classify(msg string) string {
	for _, p := range dropPatterns {
		if strings.Contains(msg, p.substr) {
			return p.reason
		}
	}
	return ""
}
