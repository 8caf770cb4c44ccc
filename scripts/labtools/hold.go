package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
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
// they are held: its cost per idle connection. With -http each
// connection instead makes one HTTP/1.1 request and, its answer read,
// stays open as an idle keep-alive connection (over TLS with -tls, the
// certificate unchecked): scripts/bench-http.sh.
func cmdHold(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	target := fs.String("target", "", "address:port (required)")
	n := fs.Int("n", 3000, "connections (1..20000)")
	conc := fs.Int("c", 100, "connections opened at once")
	timeout := fs.Duration("timeout", 10*time.Second, "dial and echo deadline")
	maxHold := fs.Duration("max", 120*time.Second, "hold at most this long (at most 1h)")
	asHTTP := fs.Bool("http", false, "one HTTP/1.1 GET / per connection, then hold it (keep-alive)")
	overTLS := fs.Bool("tls", false, "with -http: over TLS (certificate not checked)")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if *target == "" || fs.NArg() != 0 || *n < 1 || *n > 20000 || *conc < 1 || *timeout <= 0 ||
		*maxHold <= 0 || *maxHold > maxDuration {
		return usageError("-target ADDR required; -n 1..20000, -c >= 1, -timeout > 0, -max in (0, 1h]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	open := echoOnce
	if *asHTTP {
		open = func(target string, timeout time.Duration) (net.Conn, error) {
			return httpOnce(target, timeout, *overTLS)
		}
	}
	h := holdConns(*target, *n, *conc, *timeout, open)
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

// holdConns opens n connections to target with open, conc at once.
func holdConns(target string, n, conc int, timeout time.Duration, open func(string, time.Duration) (net.Conn, error)) *held {
	conns := make([]net.Conn, n)
	var failed atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := open(target, timeout)
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

// httpOnce dials target (in TLS if asked), sends one GET and reads its
// answer within timeout; the connection is then an idle keep-alive one.
func httpOnce(target string, timeout time.Duration, overTLS bool) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	var c net.Conn
	var err error
	if overTLS {
		c, err = tls.DialWithDialer(d, "tcp", target, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = d.Dial("tcp", target)
	}
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: bench.test\r\n\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
