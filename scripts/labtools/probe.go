package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

const (
	maxDuration = time.Hour
	maxInFlight = 256
)

// Event is one line of the -out file: a change of state seen in launch
// order, and a final "summary" line.
type Event struct {
	At     string `json:"at"`               // RFC3339Nano launch time of the probe
	Event  string `json:"event"`            // start|ok|fail|switch|summary
	Seq    int    `json:"seq"`              // probe number
	Server string `json:"server,omitempty"` // responder, for ok and switch
	Prev   string `json:"prev,omitempty"`   // previous responder, for switch
	Err    string `json:"err,omitempty"`    // for fail
	// for ok after a failure: the outage that just ended
	OutageStart string   `json:"outage_start,omitempty"`
	OutageMS    *float64 `json:"outage_ms,omitempty"`
	Failed      int      `json:"failed,omitempty"`
	// for summary
	Summary *SummaryJSON `json:"summary,omitempty"`
}

// SummaryJSON is the printed form of a Summary.
type SummaryJSON struct {
	Probes  int            `json:"probes"`
	OK      int            `json:"ok"`
	Failed  int            `json:"failed"`
	Outages []OutageJSON   `json:"outages"`
	Servers map[string]int `json:"servers"`
}

// OutageJSON is the printed form of an Outage.
type OutageJSON struct {
	Start  string  `json:"start"`
	End    string  `json:"end"`
	MS     float64 `json:"ms"`
	Failed int     `json:"failed"`
	Open   bool    `json:"open,omitempty"` // still failing when probing stopped
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func outageJSON(o Outage) OutageJSON {
	return OutageJSON{Start: ts(o.Start), End: ts(o.End), MS: ms(o.Duration()), Failed: o.Failed, Open: o.Open}
}

func (s Summary) JSON() SummaryJSON {
	j := SummaryJSON{Probes: s.Probes, OK: s.OK, Failed: s.Failed, Servers: s.Servers, Outages: []OutageJSON{}}
	for _, o := range s.Outages {
		j.Outages = append(j.Outages, outageJSON(o))
	}
	return j
}

// cmdProbe connects to -target every -interval for -duration (or until
// SIGTERM/SIGINT, or until -expect-stop FILE exists), logs each change of
// state to stderr and to -out, and prints a JSON summary to stdout.
func cmdProbe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	target := fs.String("target", "", "address:port to probe (required)")
	interval := fs.Duration("interval", 10*time.Millisecond, "time between probe launches")
	duration := fs.Duration("duration", 0, "how long to probe (required, at most 1h)")
	timeout := fs.Duration("timeout", 50*time.Millisecond, "deadline of each probe (connect + read)")
	udp := fs.Bool("udp", false, "probe with a UDP datagram instead of a TCP connection")
	out := fs.String("out", "", "append state changes as JSON lines to this file")
	stopFile := fs.String("expect-stop", "", "stop as soon as this file exists (checked every 10ms)")
	quiet := fs.Bool("q", false, "do not log state changes to stderr")
	send := fs.String("send", "", "TCP: write this after connecting (e.g. an HTTP request; \\r\\n escapes allowed); the first line of the answer is the reply")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if err := checkRun(fs, *target, *duration); err != nil {
		return err
	}
	switch {
	case *interval < time.Millisecond:
		return usageError("-interval must be at least 1ms")
	case *timeout <= 0 || *timeout > 10*time.Second:
		return usageError("-timeout must be in (0, 10s]")
	}

	var w io.Writer = io.Discard
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f // unbuffered: each event is visible at once to whoever tails it
	}
	var logw io.Writer = os.Stderr
	if *quiet {
		logw = io.Discard
	}

	ctx, stop := runContext(*duration, *stopFile)
	defer stop()

	p := &prober{target: *target, timeout: *timeout, udp: *udp,
		send: strings.NewReplacer(`\r`, "\r", `\n`, "\n").Replace(*send)}
	tr := newTracker(w, logw)
	tr.emit(Event{At: ts(time.Now()), Event: "start", Seq: -1, Server: *target})
	results := p.run(ctx, *interval, tr)

	s := Summarize(results)
	sj := s.JSON()
	tr.emit(Event{At: ts(time.Now()), Event: "summary", Seq: len(results), Summary: &sj})
	enc := json.NewEncoder(os.Stdout)
	return enc.Encode(sj)
}

type prober struct {
	send    string
	target  string
	timeout time.Duration
	udp     bool
}

// run launches a probe every interval until ctx ends (see launch), hands
// the results to tr in launch order, and returns them all.
func (p *prober) run(ctx context.Context, interval time.Duration, tr *tracker) []Result {
	var (
		mu      sync.Mutex
		results []Result
		done    []bool
		next    int // first result not yet handed to the tracker
	)
	p.launch(ctx, interval, func(seq int, at time.Time) {
		mu.Lock()
		results = append(results, Result{Seq: seq, At: at})
		done = append(done, false)
		mu.Unlock()
	}, func(r Result) {
		mu.Lock()
		defer mu.Unlock()
		results[r.Seq] = r
		done[r.Seq] = true
		for next < len(results) && done[next] {
			tr.observe(results[next])
			next++
		}
	})
	mu.Lock()
	defer mu.Unlock()
	return results
}

// launch starts a probe every interval until ctx ends, each with its own
// deadline, so a probe stuck on a dead path does not delay the next one;
// at most maxInFlight at once. It calls started as each is launched, in
// order, and finished as each completes (concurrently, in any order),
// and returns once none is in flight.
func (p *prober) launch(ctx context.Context, interval time.Duration, started func(seq int, at time.Time), finished func(Result)) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxInFlight)
	t := time.NewTicker(interval)
	defer t.Stop()
	for seq := 0; ; seq++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			return
		}
		at := time.Now()
		started(seq, at)
		wg.Go(func() {
			defer func() { <-sem }()
			r := p.once(at)
			r.Seq = seq
			finished(r)
		})
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// once runs one probe launched at at.
func (p *prober) once(at time.Time) Result {
	r := Result{At: at}
	deadline := at.Add(p.timeout)
	network := "tcp"
	if p.udp {
		network = "udp"
	}
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial(network, p.target)
	if err != nil {
		r.Err = shortErr(err)
		return r
	}
	defer c.Close()
	c.SetDeadline(deadline)
	if p.udp {
		if _, err := c.Write([]byte("probe\n")); err != nil {
			r.Err = shortErr(err)
			return r
		}
	} else if p.send != "" {
		if _, err := c.Write([]byte(p.send)); err != nil {
			r.Err = shortErr(err)
			return r
		}
	}
	line, err := bufio.NewReaderSize(c, 512).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "" {
		if err == nil || err == io.EOF {
			r.Err = "empty answer"
		} else {
			r.Err = shortErr(err)
		}
		return r
	}
	r.OK = true
	r.Server = line
	return r
}

func shortErr(err error) string {
	if e, ok := err.(net.Error); ok && e.Timeout() {
		return "timeout"
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// tracker turns results, fed in launch order, into change-of-state events.
type tracker struct {
	w, log io.Writer
	mu     sync.Mutex
	seen   bool
	ok     bool
	server string
	cur    *Outage
}

func newTracker(w, log io.Writer) *tracker { return &tracker{w: w, log: log} }

func (t *tracker) emit(e Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, _ := json.Marshal(e)
	t.w.Write(append(b, '\n'))
	if e.Event == "summary" || e.Event == "start" {
		return
	}
	msg := fmt.Sprintf("%s #%d %s", e.At, e.Seq, e.Event)
	if e.Server != "" {
		msg += " " + e.Server
	}
	if e.Prev != "" {
		msg += " (was " + e.Prev + ")"
	}
	if e.Err != "" {
		msg += ": " + e.Err
	}
	if e.OutageMS != nil {
		msg += fmt.Sprintf(" after %.1f ms outage, %d failed", *e.OutageMS, e.Failed)
	}
	fmt.Fprintln(t.log, msg)
}

func (t *tracker) observe(r Result) {
	first := !t.seen
	t.seen = true
	if r.OK {
		switch {
		case first || !t.ok:
			e := Event{At: ts(r.At), Event: "ok", Seq: r.Seq, Server: r.Server}
			if t.cur != nil {
				t.cur.End = r.At
				v := ms(t.cur.Duration())
				e.OutageStart, e.OutageMS, e.Failed = ts(t.cur.Start), &v, t.cur.Failed
				t.cur = nil
			}
			t.emit(e)
		case r.Server != t.server:
			t.emit(Event{At: ts(r.At), Event: "switch", Seq: r.Seq, Server: r.Server, Prev: t.server})
		}
		t.ok, t.server = true, r.Server
		return
	}
	if t.cur == nil {
		t.cur = &Outage{Start: r.At}
	}
	t.cur.Failed++
	if first || t.ok {
		t.emit(Event{At: ts(r.At), Event: "fail", Seq: r.Seq, Err: r.Err})
	}
	t.ok = false
}
