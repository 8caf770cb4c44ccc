package main

import (
	"context"
	"io"
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

	h := holdConns(ln.Addr().String(), 30, 8, 2*time.Second)
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
	h2 := holdConns(addr, 5, 2, time.Second)
	if len(h2.conns) != 0 || h2.failed != 5 || h2.firstErr == "" {
		t.Errorf("to a closed port: held %d, failed %d (%q); want 0, 5 and an error", len(h2.conns), h2.failed, h2.firstErr)
	}
}
