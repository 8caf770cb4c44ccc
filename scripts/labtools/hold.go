package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// cmdHold opens -n TCP connections to -target (-c at once), sends one
// byte on each and reads it back (from `labtools echo -raw`, through a
// proxy), prints "ready OK FAILED" and holds them open until SIGTERM,
// SIGINT or -max. scripts/bench-proxy.sh reads the proxy's memory while
// they are held: its cost per idle connection.
func cmdHold(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	target := fs.String("target", "", "address:port (required)")
	n := fs.Int("n", 3000, "connections (1..20000)")
	conc := fs.Int("c", 100, "connections opened at once")
	timeout := fs.Duration("timeout", 10*time.Second, "dial and echo deadline")
	maxHold := fs.Duration("max", 120*time.Second, "hold at most this long (at most 1h)")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if *target == "" || fs.NArg() != 0 || *n < 1 || *n > 20000 || *conc < 1 || *timeout <= 0 ||
		*maxHold <= 0 || *maxHold > maxDuration {
		return usageError("-target ADDR required; -n 1..20000, -c >= 1, -timeout > 0, -max in (0, 1h]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	h := holdConns(*target, *n, *conc, *timeout)
	defer h.close()
	fmt.Printf("ready %d %d\n", len(h.conns), h.failed)
	if h.firstErr != "" {
		fmt.Fprintln(os.Stderr, "first error:", h.firstErr)
	}
	select {
	case <-ctx.Done():
	case <-time.After(*maxHold):
	}
	return nil
}

// held is what holdConns opened: the connections that echoed, how many
// did not, and the first error.
type held struct {
	conns    []net.Conn
	failed   int
	firstErr string
}

func (h *held) close() {
	for _, c := range h.conns {
		c.Close()
	}
}

// holdConns opens n connections to target, conc at once, each echoing
// one byte within timeout.
func holdConns(target string, n, conc int, timeout time.Duration) *held {
	conns := make([]net.Conn, n)
	var failed atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := echoOnce(target, timeout)
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	h := &held{failed: int(failed.Load())}
	if e, ok := firstErr.Load().(string); ok {
		h.firstErr = e
	}
	for _, c := range conns {
		if c != nil {
			h.conns = append(h.conns, c)
		}
	}
	return h
}

// echoOnce dials target, sends a byte and reads it back within timeout.
func echoOnce(target string, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", target, timeout)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	b := []byte{'x'}
	if _, err := c.Write(b); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := io.ReadFull(c, b); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
