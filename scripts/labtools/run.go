package main

import (
	"context"
	"flag"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// checkRun checks what the clients that run for a while (probe,
// sessions) all take: no positional arguments, -target HOST:PORT, and
// -duration in (0, 1h].
func checkRun(fs *flag.FlagSet, target string, duration time.Duration) error {
	switch {
	case fs.NArg() != 0:
		return usageError("no positional arguments")
	case target == "":
		return usageError("-target is required")
	case duration <= 0 || duration > maxDuration:
		return usageError("-duration is required, > 0 and at most 1h")
	}
	if _, _, err := net.SplitHostPort(target); err != nil {
		return usageError("-target: " + err.Error())
	}
	return nil
}

// runContext ends after d, on SIGTERM or SIGINT, or once stopFile (if
// not "") exists, checked every 10 ms.
func runContext(d time.Duration, stopFile string) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithTimeout(ctx, d)
	if stopFile != "" {
		go every(ctx, 10*time.Millisecond, func() bool {
			if _, err := os.Stat(stopFile); err == nil {
				cancel()
				return false
			}
			return true
		})
	}
	return ctx, func() { cancel(); stop() }
}

// every calls fn every interval until ctx ends or fn returns false.
func every(ctx context.Context, interval time.Duration, fn func() bool) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !fn() {
			return
		}
	}
}
