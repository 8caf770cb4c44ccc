package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestHoldThroughRawEcho: every held connection echoed its byte through
// `echo -raw` and is still open; a dead target fails them all.
func TestHoldThroughRawEcho(t *testing.T) {
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { serveEcho(ctx, ln, 5*time.Second, 100, true); close(done) }()
	defer func() { cancel(); <-done }()

	h := holdConns(ln.Addr().String(), 30, 8, 2*time.Second, echoOnce)
	defer h.close()
	if len(h.conns) != 30 || h.failed != 0 || h.firstErr != "" {
		t.Fatalf("held %d, failed %d (%s); want 30 and 0", len(h.conns), h.failed, h.firstErr)
	}
	// still open, still echoing bytes without a newline
	c := h.conns[17]
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ab")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ab" {
		t.Fatalf("echo %q, %v; want \"ab\"", b, err)
	}

	dead := listen(t)
	addr := dead.Addr().String()
	dead.Close()
	h2 := holdConns(addr, 5, 2, time.Second, echoOnce)
	if len(h2.conns) != 0 || h2.failed != 5 || h2.firstErr == "" {
		t.Errorf("to a closed port: held %d, failed %d (%q); want 0, 5 and an error", len(h2.conns), h2.failed, h2.firstErr)
	}
}

// TestHoldHTTP: -http makes one request per connection and keeps the
// connections open as idle keep-alive ones (the server sees them stay).
func TestHoldHTTP(t *testing.T) {
	var open atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed:
			open.Add(-1)
		}
	}
	srv.Start()
	defer srv.Close()
	h := holdConns(srv.Listener.Addr().String(), 10, 4, 2*time.Second,
		func(target string, d time.Duration) (net.Conn, error) { return httpOnce(target, d, false) })
	if len(h.conns) != 10 || h.failed != 0 || open.Load() != 10 {
		t.Fatalf("held %d (failed %d, %s), server sees %d open; want 10", len(h.conns), h.failed, h.firstErr, open.Load())
	}
	h.close()
}
