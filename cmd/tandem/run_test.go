package main

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"
)

// TestSIGHUPLoopEndsWithItsContext: the reload loop a running node keeps
// for SIGHUP returns once the node's context ends.
func TestSIGHUPLoopEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		reloadOnHUP(ctx, make(chan os.Signal), nil, slog.New(slog.DiscardHandler))
	}()
	select {
	case <-done:
		t.Fatal("the loop ended before its context")
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the SIGHUP loop outlived its context")
	}
}
