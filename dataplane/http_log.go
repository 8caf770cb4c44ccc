package dataplane

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// accessLog writes one line per request, in the "combined" format of
// Apache and nginx or as a JSON object, with one Write per line (a file
// opened O_APPEND gets whole lines even when shared).
type accessLog struct {
	w    io.Writer
	json bool
	mu   sync.Mutex
	buf  []byte
}

func newAccessLog(w io.Writer, format string) *accessLog {
	if w == nil {
		return nil
	}
	return &accessLog{w: w, json: format == config.AccessLogJSON}
}

// logEntry is what a line says about a request.
type logEntry struct {
	Time     time.Time `json:"time"`
	Cluster  string    `json:"cluster"`
	Client   string    `json:"client"`
	Method   string    `json:"method"`
	Host     string    `json:"host"`
	URI      string    `json:"uri"`
	Proto    string    `json:"proto"`
	Status   int       `json:"status"`
	Bytes    int64     `json:"bytes"`
	Referer  string    `json:"referer"`
	Agent    string    `json:"user_agent"`
	Server   string    `json:"server,omitempty"`
	Duration float64   `json:"duration_ms"`
}

func (l *accessLog) write(r *http.Request, e *logEntry) {
	if l == nil {
		return
	}
	e.Method, e.Host, e.URI, e.Proto = r.Method, r.Host, r.RequestURI, r.Proto
	e.Referer, e.Agent = r.Referer(), r.UserAgent()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buf[:0]
	if l.json {
		j, err := json.Marshal(e)
		if err != nil {
			return
		}
		b = append(append(b, j...), '\n')
	} else {
		b = appendCombined(b, e)
	}
	l.buf = b
	l.w.Write(b)
}

// appendCombined formats e as the combined log format:
// host ident user [time] "request" status bytes "referer" "agent".
func appendCombined(b []byte, e *logEntry) []byte {
	b = append(b, e.Client...)
	b = append(b, " - - ["...)
	b = e.Time.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] "...)
	b = strconv.AppendQuote(b, e.Method+" "+e.URI+" "+e.Proto)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, ' ')
	if e.Bytes > 0 {
		b = strconv.AppendInt(b, e.Bytes, 10)
	} else {
		b = append(b, '-')
	}
	b = append(b, ' ')
	b = appendQuoted(b, e.Referer)
	b = append(b, ' ')
	b = appendQuoted(b, e.Agent)
	return append(b, '\n')
}

// appendQuoted appends s quoted, or "-" when it is empty.
func appendQuoted(b []byte, s string) []byte {
	if s == "" {
		s = "-"
	}
	return strconv.AppendQuote(b, s)
}
