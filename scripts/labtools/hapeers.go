package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// `labtools hapeers` is the HAProxy side of scripts/bench-persistence.sh:
// it talks to HAProxy's command socket to feed a stick-table (`set table`
// lines pipelined in prompt mode) and to read how many entries a table
// holds (`show table`), on one process and on its peer.
//
//	hapeers used -sock S -table T
//	hapeers feed -sock S -table T -first N -count N [-rate R] [-peer S2] [-pid PID]
//	hapeers wait -sock S -table T -count N -t0file F [-pidfile F] [-timeout 120s]

func cmdHAPeers(args []string) error {
	if len(args) == 0 {
		return usageError("hapeers used|feed|wait ...")
	}
	fs := flag.NewFlagSet("hapeers "+args[0], flag.ContinueOnError)
	sock := fs.String("sock", "", "HAProxy's command socket (required)")
	table := fs.String("table", "bk", "stick-table")
	count := fs.Int("count", 0, "entries: fed (feed) or awaited (wait)")
	first := fs.Int("first", 0, "feed: the first entry's number (entry i is 100.64.0.0 + i)")
	rate := fs.Float64("rate", 0, "feed: entries per second (0: all at once)")
	peer := fs.String("peer", "", "feed: the peer's command socket, watched until it holds the entries")
	pid := fs.String("pid", "", "feed: the fed process's PID, for its CPU time")
	poll := fs.Duration("poll", 5*time.Millisecond, "feed, wait: how often the peer's table is read")
	catchup := fs.Duration("catchup", 30*time.Second, "feed: how long the peer may take after the feed")
	t0file := fs.String("t0file", "", "wait: a file holding the peer's launch time (date +%s.%N)")
	pidfile := fs.String("pidfile", "", "wait: a file holding the peer's PID, for its CPU time")
	timeout := fs.Duration("timeout", 120*time.Second, "wait: give up after this long")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError(err.Error())
	}
	if *sock == "" || fs.NArg() != 0 {
		return usageError("hapeers " + args[0] + ": -sock required, no positional arguments")
	}
	var out any
	switch args[0] {
	case "used":
		n, err := haUsed(*sock, *table, 5*time.Second)
		if err != nil {
			return err
		}
		fmt.Println(n)
		return nil
	case "feed":
		if *count < 1 || *first < 0 || *rate < 0 {
			return usageError("hapeers feed: -count >= 1, -first >= 0, -rate >= 0")
		}
		r, err := haFeed(feedOpts{sock: *sock, peer: *peer, table: *table, first: *first, count: *count,
			rate: *rate, pid: *pid, poll: *poll, catchup: *catchup})
		if err != nil {
			return err
		}
		out = r
	case "wait":
		if *count < 1 || *t0file == "" {
			return usageError("hapeers wait: -count >= 1 and -t0file required")
		}
		r, err := haWait(*sock, *table, *count, *t0file, *pidfile, *poll, *timeout)
		if err != nil {
			return err
		}
		out = r
	default:
		return usageError("hapeers used|feed|wait, not " + args[0])
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

var usedRE = regexp.MustCompile(`# table: (\S+), type: \S+, size:\d+, used:(\d+)`)

// parseUsed finds table's used: in the answer to "show table".
func parseUsed(answer []byte, table string) (int, error) {
	for _, m := range usedRE.FindAllSubmatch(answer, -1) {
		if string(m[1]) == table {
			return strconv.Atoi(string(m[2]))
		}
	}
	return 0, fmt.Errorf("no table %s in %q", table, answer[:min(len(answer), 200)])
}

// haUsed asks the command socket at sock how many entries table holds.
func haUsed(sock, table string, timeout time.Duration) (int, error) {
	c, err := net.DialTimeout("unix", sock, timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "show table\n"); err != nil {
		return 0, err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return 0, err
	}
	return parseUsed(b, table)
}

// cpuSeconds is the user and system CPU time of process pid (nil when
// unknown), from /proc/PID/stat in clock ticks of 1/100 s.
func cpuSeconds(pid string) *float64 {
	if pid == "" {
		return nil
	}
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return nil
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return nil
	}
	v := float64(u+s) / 100
	return &v
}

// promptCounter counts the prompts ("\n> ") in a stream read in pieces.
type promptCounter struct{ tail []byte }

func (p *promptCounter) add(b []byte) int {
	s := append(p.tail, b...)
	n := bytes.Count(s, []byte("\n> "))
	p.tail = append([]byte(nil), s[max(0, len(s)-2):]...)
	return n
}

// count is a count of entries at a moment: answered by the fed process,
// or held by its peer.
type count struct {
	at time.Time
	n  int
}

// peerWatch reads the peer's table every interval, from start until it
// holds until entries or stop is called.
type peerWatch struct {
	mu      sync.Mutex
	samples []count
	err     string
	quit    chan struct{}
	done    chan struct{}
}

func watchPeer(sock, table string, interval time.Duration, until int) *peerWatch {
	w := &peerWatch{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			n, err := haUsed(sock, table, 5*time.Second)
			w.mu.Lock()
			if err != nil {
				w.err = err.Error()
			} else {
				w.samples = append(w.samples, count{time.Now(), n})
			}
			w.mu.Unlock()
			if err == nil && n >= until {
				return
			}
			select {
			case <-w.quit:
				return
			case <-time.After(interval):
			}
		}
	}()
	return w
}

// stop ends the watch after up to wait for it to end by itself.
func (w *peerWatch) stop(wait time.Duration) ([]count, string) {
	select {
	case <-w.done:
	case <-time.After(wait):
	}
	close(w.quit)
	<-w.done
	return w.samples, w.err
}

type feedOpts struct {
	sock, peer, table, pid string
	first, count           int
	rate                   float64
	poll, catchup          time.Duration
}

// feedResult is what `hapeers feed` prints (the keys of the first,
// Python version).
type feedResult struct {
	Count       int         `json:"count"`
	Secs        float64     `json:"secs"`
	Rate        float64     `json:"rate"`
	OfferedRate *float64    `json:"offered_rate"`
	UsedAdded   int         `json:"used_added"`
	HP1CPU      *float64    `json:"hp1_cpu_s"`
	Peer        *peerResult `json:"peer,omitempty"`
}

// peerResult is how the peer followed a feed.
type peerResult struct {
	UsedWhenFed      int      `json:"used_when_fed"`
	BehindWhenFed    int      `json:"behind_when_fed"`
	CaughtUp         bool     `json:"caught_up"`
	CaughtUpAfterFed *float64 `json:"caught_up_after_fed_s"`
	AllOnPeer        *float64 `json:"all_on_peer_s"`
	Samples          int      `json:"samples"`
	Error            *string  `json:"error"`
	LagP50MS         *float64 `json:"lag_p50_ms,omitempty"`
	LagP99MS         *float64 `json:"lag_p99_ms,omitempty"`
	LagMaxMS         *float64 `json:"lag_max_ms,omitempty"`
}

// setLines are the `set table` commands of entries first..first+count-1
// (entry i: key 100.64.0.0 + i, shared address space, never routed here; server_id 1 + i%16) in one buffer, and
// where each starts (one offset more, the end).
func setLines(table string, first, count int) ([]byte, []int) {
	var b bytes.Buffer
	off := make([]int, 0, count+1)
	for i := first; i < first+count; i++ {
		off = append(off, b.Len())
		u := uint32(0x64400000 + i)
		fmt.Fprintf(&b, "set table %s key %d.%d.%d.%d data.server_id %d\n", table, u>>24, u>>16&255, u>>8&255, u&255, 1+i%16)
	}
	return b.Bytes(), append(off, b.Len())
}

// haFeed pipelines count `set table` commands on one prompt-mode
// connection, at rate per second in bursts every ~2 ms (or all at once),
// and times the answers; with a peer, it watches the peer's table until
// it holds them and measures each entry's lag (answered by the fed
// process → counted on the peer).
func haFeed(o feedOpts) (*feedResult, error) {
	baseUsed, err := haUsed(o.sock, o.table, 5*time.Second)
	if err != nil {
		return nil, err
	}
	peerBase := 0
	if o.peer != "" {
		if peerBase, err = haUsed(o.peer, o.table, 5*time.Second); err != nil {
			return nil, err
		}
	}
	lines, off := setLines(o.table, o.first, o.count)
	c, err := net.Dial("unix", o.sock)
	if err != nil {
		return nil, err
	}
	var acks []count // answers so far, as they come
	var readErr error
	readDone := make(chan struct{})
	if _, err := io.WriteString(c, "prompt\n"); err != nil {
		c.Close()
		return nil, err
	}
	go func() {
		defer close(readDone)
		var pc promptCounter
		buf := make([]byte, 1<<20)
		n := -1 // the first prompt answers "prompt"
		for n < o.count {
			k, err := c.Read(buf)
			if k > 0 {
				n += pc.add(buf[:k])
				acks = append(acks, count{time.Now(), n})
			}
			if err != nil {
				if err != io.EOF {
					readErr = err
				}
				return
			}
		}
	}()
	var w *peerWatch
	if o.peer != "" {
		w = watchPeer(o.peer, o.table, o.poll, peerBase+o.count)
	}
	c0 := cpuSeconds(o.pid)
	t0 := time.Now()
	if o.rate <= 0 {
		_, err = c.Write(lines)
	} else {
		step := max(1, int(o.rate*0.002)) // bursts every ~2 ms
		for i := 0; i < o.count && err == nil; {
			due := min(o.count, int(o.rate*time.Since(t0).Seconds())+step)
			if due > i {
				_, err = c.Write(lines[off[i]:off[due]])
				i = due
			}
			time.Sleep(time.Millisecond)
		}
	}
	if err == nil {
		select {
		case <-readDone:
		case <-time.After(300 * time.Second):
		}
	}
	t1 := time.Now()
	c1 := cpuSeconds(o.pid)
	c.Close()
	<-readDone
	n := 0
	if len(acks) > 0 {
		n = acks[len(acks)-1].n
	}
	if err != nil || readErr != nil || n < o.count {
		if w != nil {
			w.stop(0)
		}
		return nil, fmt.Errorf("feed: %d of %d answered (%v, %v)", n, o.count, err, readErr)
	}
	secs := t1.Sub(t0).Seconds()
	r := &feedResult{Count: o.count, Secs: secs, Rate: float64(o.count) / secs}
	if o.rate > 0 {
		r.OfferedRate = &o.rate
	}
	if c0 != nil && c1 != nil {
		d := *c1 - *c0
		r.HP1CPU = &d
	}
	u, err := haUsed(o.sock, o.table, 5*time.Second)
	if err != nil {
		return nil, err
	}
	r.UsedAdded = u - baseUsed
	if w != nil {
		samples, werr := w.stop(o.catchup)
		r.Peer = followed(t0, t1, acks, samples, peerBase, o.count)
		if werr != "" {
			r.Peer.Error = &werr
		}
	}
	return r, nil
}

// followed measures how the peer followed a feed of count entries from
// t0 to t1: acks are the fed process's answers, samples the peer's table
// counts (from peerBase).
func followed(t0, t1 time.Time, acks, samples []count, peerBase, count int) *peerResult {
	p := &peerResult{Samples: len(samples)}
	endUsed := peerBase
	if len(samples) > 0 {
		endUsed = samples[len(samples)-1].n
	}
	for _, s := range samples {
		if !s.at.Before(t1) {
			endUsed = s.n
			break
		}
	}
	p.UsedWhenFed = endUsed - peerBase
	p.BehindWhenFed = count - p.UsedWhenFed
	for _, s := range samples {
		if s.n-peerBase >= count {
			p.CaughtUp = true
			after, all := max(0, s.at.Sub(t1).Seconds()), s.at.Sub(t0).Seconds()
			p.CaughtUpAfterFed, p.AllOnPeer = &after, &all
			break
		}
	}
	// entry k's lag: counted on the peer minus answered by the fed process
	an := make([]int, len(acks))
	for i, a := range acks {
		an[i] = a.n
	}
	pu := make([]int, len(samples))
	for i, s := range samples {
		pu[i] = s.n - peerBase
	}
	var lags []float64
	for k := 1; k <= count; k += max(1, count/5000) {
		i, j := sort.SearchInts(an, k), sort.SearchInts(pu, k)
		if i < len(acks) && j < len(samples) {
			lags = append(lags, max(0, samples[j].at.Sub(acks[i].at).Seconds()))
		}
	}
	if len(lags) > 0 {
		sort.Float64s(lags)
		p50, p99, mx := floorPercentile(lags, .5)*1e3, floorPercentile(lags, .99)*1e3, lags[len(lags)-1]*1e3
		p.LagP50MS, p.LagP99MS, p.LagMaxMS = &p50, &p99, &mx
	}
	return p
}

// waitResult is what `hapeers wait` prints: from the peer's launch (the
// time in t0file) to its command socket answering and to its table
// holding count entries.
type waitResult struct {
	Count         int      `json:"count"`
	StartToSynced float64  `json:"start_to_synced_s"`
	StartToCLI    float64  `json:"start_to_cli_s"`
	CLIToSynced   float64  `json:"cli_to_synced_s"`
	Rate          float64  `json:"rate"`
	HP2CPU        *float64 `json:"hp2_cpu_s"`
}

// haWait polls the command socket at sock (which may not exist yet) until
// table holds count entries, then reads the launch time from t0file.
func haWait(sock, table string, count int, t0file, pidfile string, poll, timeout time.Duration) (*waitResult, error) {
	deadline := time.Now().Add(timeout)
	var up, now time.Time
	last := 0
	for {
		n, err := haUsed(sock, table, 2*time.Second)
		if err == nil {
			now = time.Now()
			if up.IsZero() {
				up = now
			}
			last = n
			if n >= count {
				break
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("wait: %d of %d entries after the timeout", last, count)
		}
		time.Sleep(poll)
	}
	b, err := os.ReadFile(t0file)
	if err != nil {
		return nil, err
	}
	t0s, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t0file, err)
	}
	unix := func(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
	r := &waitResult{Count: count, StartToSynced: unix(now) - t0s, StartToCLI: unix(up) - t0s,
		CLIToSynced: now.Sub(up).Seconds()}
	r.Rate = float64(count) / r.StartToSynced
	if pidfile != "" {
		if p, err := os.ReadFile(pidfile); err == nil {
			r.HP2CPU = cpuSeconds(strings.TrimSpace(string(p)))
		}
	}
	return r, nil
}
