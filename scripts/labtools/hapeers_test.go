package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseUsedPicksTheTable(t *testing.T) {
	ans := []byte("# table: fe, type: ip, size:100, used:7\n# table: bk, type: ip, size:2097152, used:1234\n")
	if n, err := parseUsed(ans, "bk"); n != 1234 || err != nil {
		t.Errorf("bk: %d, %v; want 1234", n, err)
	}
	if n, err := parseUsed(ans, "fe"); n != 7 || err != nil {
		t.Errorf("fe: %d, %v; want 7", n, err)
	}
	if _, err := parseUsed(ans, "nope"); err == nil {
		t.Error("a missing table gave no error")
	}
}

func TestPromptCounterAcrossReads(t *testing.T) {
	var p promptCounter
	got := 0
	// three prompts, split inside each of them
	for _, piece := range []string{"\n", "> \n>", " x\n> ", "\n"} {
		got += p.add([]byte(piece))
	}
	if got != 3 {
		t.Errorf("counted %d prompts, want 3", got)
	}
}

func TestSetLines(t *testing.T) {
	b, off := setLines("bk", 255, 2)
	second := "set table bk key 100.64.1.0 data.server_id 1\n"
	want := "set table bk key 100.64.0.255 data.server_id 16\n" + second
	if string(b) != want || len(off) != 3 || off[0] != 0 || string(b[off[1]:off[2]]) != second {
		t.Errorf("lines %q offsets %v; want %q", b, off, want)
	}
}

// TestFollowedLags: per-entry lag is the peer's first count reaching the
// entry minus the fed process's first answer reaching it.
func TestFollowedLags(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	acks := []count{{at(10), 2}, {at(20), 4}}
	samples := []count{{at(5), 100}, {at(25), 103}, {at(40), 104}}
	p := followed(t0, at(20), acks, samples, 100, 4)
	if p.UsedWhenFed != 3 || p.BehindWhenFed != 1 || !p.CaughtUp || p.Samples != 3 {
		t.Fatalf("%+v: want 3 on the peer when fed, 1 behind, caught up", p)
	}
	near := func(v *float64, want float64) bool { return v != nil && *v > want-1e-6 && *v < want+1e-6 }
	if !near(p.CaughtUpAfterFed, 0.020) || !near(p.AllOnPeer, 0.040) {
		t.Errorf("caught up %v s after the feed, all on the peer at %v s; want 0.020 and 0.040", *p.CaughtUpAfterFed, *p.AllOnPeer)
	}
	// lags 15, 15, 5, 20 ms
	if !near(p.LagP50MS, 15) || !near(p.LagP99MS, 15) || !near(p.LagMaxMS, 20) {
		t.Errorf("lag p50 %v p99 %v max %v ms; want 15, 15, 20", *p.LagP50MS, *p.LagP99MS, *p.LagMaxMS)
	}

	never := followed(t0, at(20), acks, []count{{at(30), 101}}, 100, 4)
	if never.CaughtUp || never.CaughtUpAfterFed != nil || never.BehindWhenFed != 3 {
		t.Errorf("a peer that never caught up: %+v", never)
	}
}

// fakeHA is HAProxy's command socket as the bench uses it: "show table"
// answers and closes; after "prompt" every command is answered with a
// prompt; "set table bk ..." adds an entry here and on the peer.
type fakeHA struct {
	mu   sync.Mutex
	used int
	peer *fakeHA
	sock string
}

func startFakeHA(t *testing.T, name string, peer *fakeHA) *fakeHA {
	f := &fakeHA{peer: peer, sock: filepath.Join(t.TempDir(), name+".sock")}
	ln, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			wg.Go(func() { f.serve(c) })
		}
	})
	return f
}

func (f *fakeHA) add(n int) {
	f.mu.Lock()
	f.used += n
	f.mu.Unlock()
}

func (f *fakeHA) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br, bw := bufio.NewReader(c), bufio.NewWriter(c)
	prompt := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		switch {
		case line == "prompt\n":
			prompt = true
		case line == "show table\n":
			f.mu.Lock()
			fmt.Fprintf(bw, "# table: fe, type: ip, size:100, used:0\n# table: bk, type: ip, size:2097152, used:%d\n", f.used)
			f.mu.Unlock()
		case strings.HasPrefix(line, "set table bk key "):
			f.add(1)
			if f.peer != nil {
				f.peer.add(1)
			}
		}
		if !prompt {
			bw.Flush()
			return
		}
		bw.WriteString("\n> ")
		if br.Buffered() == 0 {
			bw.Flush()
		}
	}
}

func TestFeedWithPeer(t *testing.T) {
	hp2 := startFakeHA(t, "hp2", nil)
	hp1 := startFakeHA(t, "hp1", hp2)
	hp1.add(10) // entries from before count for neither
	r, err := haFeed(feedOpts{sock: hp1.sock, peer: hp2.sock, table: "bk", count: 500, pid: fmt.Sprint(os.Getpid()),
		poll: time.Millisecond, catchup: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Count != 500 || r.UsedAdded != 500 || r.OfferedRate != nil || r.HP1CPU == nil || r.Rate <= 0 {
		t.Errorf("%+v: want 500 entries added, no offered rate, a CPU time", r)
	}
	if p := r.Peer; p == nil || !p.CaughtUp || p.LagP99MS == nil || p.Error != nil {
		t.Errorf("peer %+v: want caught up with lags measured", p)
	}

	r, err = haFeed(feedOpts{sock: hp1.sock, table: "bk", first: 500, count: 100, rate: 2000})
	if err != nil {
		t.Fatal(err)
	}
	// 100 entries at 2,000/s take about 50 ms
	if r.UsedAdded != 100 || r.OfferedRate == nil || *r.OfferedRate != 2000 || r.Secs < 0.04 || r.Peer != nil {
		t.Errorf("paced: %+v: want 100 added in about 50 ms, no peer", r)
	}
}

func TestWaitForPeer(t *testing.T) {
	hp2 := startFakeHA(t, "hp2", nil)
	t0 := filepath.Join(t.TempDir(), "t0")
	start := time.Now()
	os.WriteFile(t0, fmt.Appendf(nil, "%.9f\n", float64(start.UnixNano())/1e9), 0o644)
	go func() { time.Sleep(30 * time.Millisecond); hp2.add(1000) }()
	r, err := haWait(hp2.sock, "bk", 1000, t0, "", time.Millisecond, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.StartToSynced < 0.025 || r.StartToCLI < 0 || r.StartToCLI > r.StartToSynced || r.CLIToSynced < 0.02 || r.HP2CPU != nil {
		t.Errorf("%+v: want synced after about 30 ms, the CLI up before", r)
	}
	if _, err := haWait(hp2.sock, "bk", 5000, t0, "", time.Millisecond, 30*time.Millisecond); err == nil ||
		!strings.Contains(err.Error(), "1000 of 5000") {
		t.Errorf("an unfilled table: %v, want a timeout with 1000 of 5000", err)
	}
}
