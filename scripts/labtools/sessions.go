package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const maxSessions = 5000

// cmdSessions holds N long-lived TCP sessions to -target, each sending a
// line every -interval and waiting for its echo (an IM or LDAP session
// that stays open), until -duration passes, SIGTERM/SIGINT, or -stop FILE
// appears. It prints a SessionsSummary as JSON on stdout. With -ready
// FILE it writes that file once every session has had its first answer
// (or failed), so a script knows when to pull a cable.
func cmdSessions(args []string) error {
	fs := flag.NewFlagSet("sessions", flag.ContinueOnError)
	target := fs.String("target", "", "address:port of the echo service (required)")
	n := fs.Int("n", 200, "number of sessions (1..5000)")
	interval := fs.Duration("interval", 100*time.Millisecond, "one line per session this often")
	duration := fs.Duration("duration", 0, "how long to run (required, at most 1h)")
	timeout := fs.Duration("timeout", 10*time.Second, "a line not echoed within this is a failure (timeout)")
	stall := fs.Duration("stall", 150*time.Millisecond, "a gap between two answers longer than this is a stall")
	hang := fs.Duration("hang", time.Second, "a session still waiting this long at the end has not survived")
	ready := fs.String("ready", "", "write this file (\"ANSWERED FAILED\\n\") once every session has answered once or failed")
	stopFile := fs.String("stop", "", "stop as soon as this file exists (checked every 10ms)")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if err := checkRun(fs, *target, *duration); err != nil {
		return err
	}
	switch {
	case *n < 1 || *n > maxSessions:
		return usageError("-n must be 1..5000")
	case *interval < time.Millisecond || *interval > time.Minute:
		return usageError("-interval must be in [1ms, 1m]")
	case *timeout <= 0 || *timeout > time.Minute:
		return usageError("-timeout must be in (0, 1m]")
	case *stall <= 0 || *hang <= 0:
		return usageError("-stall and -hang must be > 0")
	}

	ctx, stop := runContext(*duration, *stopFile)
	defer stop()

	c := &sessionClient{target: *target, interval: *interval, timeout: *timeout, stall: *stall}
	onReady := func(answered, failed int) {}
	if *ready != "" {
		onReady = func(answered, failed int) { writeReady(*ready, answered, failed) }
	}
	s := c.runAll(ctx, *n, *hang, onReady)
	fmt.Fprintf(os.Stderr, "labtools sessions: %d of %d survived, %d stalled, longest gap %.1f ms\n",
		s.Survived, s.Sessions, s.Stalled, s.GapMax)
	return json.NewEncoder(os.Stdout).Encode(s)
}

// runAll runs n sessions until ctx ends, calls onReady once every session
// has answered once or failed (with how many did which), and summarizes.
func (c *sessionClient) runAll(ctx context.Context, n int, hang time.Duration, onReady func(answered, failed int)) SessionsSummary {
	c.recs = make([]SessionRecord, n)
	start := time.Now()
	var settled, early atomic.Int64 // answered once or failed; failed first
	var wg sync.WaitGroup
	for i := range c.recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// spread the sessions' phases over one interval
			at := start.Add(time.Duration(i) * c.interval / time.Duration(n))
			c.run(ctx, i, at, func(ok bool) {
				if !ok {
					early.Add(1)
				}
				if settled.Add(1) == int64(n) {
					f := int(early.Load())
					onReady(n-f, f)
				}
			})
		}()
	}
	<-ctx.Done()
	end := time.Now()
	c.stopped.Store(end.UnixNano())
	wg.Wait()
	return SummarizeSessions(c.recs, start, end, SessionOpts{Stall: c.stall, Hang: hang})
}

func writeReady(path string, answered, failed int) {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d %d\n", answered, failed), 0o644); err == nil {
		_ = os.Rename(tmp, path)
	}
}

type sessionClient struct {
	target                   string
	interval, timeout, stall time.Duration
	recs                     []SessionRecord
	// stopped is the UnixNano of the end of measuring (0 before): what
	// goes wrong after it is the stop, not a failure.
	stopped atomic.Int64
}

// ended: measuring had stopped at t (or is stopping now).
func (c *sessionClient) ended(ctx context.Context, t time.Time) bool {
	s := c.stopped.Load()
	return ctx.Err() != nil || (s != 0 && t.UnixNano() >= s)
}

// run is one session: its goroutine owns recs[i] until it returns.
// settled(true) is called at its first answer, settled(false) if it ends
// before one.
func (c *sessionClient) run(ctx context.Context, i int, at time.Time, settled func(ok bool)) {
	r := &c.recs[i]
	once := sync.OnceFunc(func() { settled(r.Answers > 0) })
	defer once()
	if sleepUntil(ctx, at); ctx.Err() != nil {
		return
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", c.target)
	if err != nil {
		if ctx.Err() == nil {
			r.Fail("connect", time.Now())
		}
		return
	}
	r.Connected = true
	defer conn.Close()
	// on stop, unblock any read or write at once
	unblock := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer unblock()

	br := bufio.NewReaderSize(conn, 256)
	next := at
	for seq := 0; ; seq++ {
		if sleepUntil(ctx, next); ctx.Err() != nil {
			return
		}
		line := fmt.Sprintf("%d %d\n", i, seq)
		sent := time.Now()
		r.Waiting = true
		conn.SetDeadline(sent.Add(c.timeout))
		if ctx.Err() != nil {
			return
		}
		if _, err := io.WriteString(conn, line); err != nil {
			c.fail(ctx, r, err, time.Now())
			return
		}
		got, err := br.ReadString('\n')
		now := time.Now()
		if err != nil {
			c.fail(ctx, r, err, now)
			return
		}
		if got != line {
			if !c.ended(ctx, now) {
				r.Fail("mismatch", now)
			}
			return
		}
		if c.ended(ctx, now) {
			return
		}
		r.Answer(now, c.stall)
		once()
		// the next line one interval after this one, or at once if the
		// echo came later than that
		next = sent.Add(c.interval)
	}
}

func (c *sessionClient) fail(ctx context.Context, r *SessionRecord, err error, at time.Time) {
	if c.ended(ctx, at) {
		return
	}
	r.Fail(errKind(err), at)
}

// errKind names a session's failure for the summary.
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, io.EOF):
		return "eof"
	case errors.Is(err, syscall.EPIPE):
		return "broken_pipe"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return shortErr(err)
}
