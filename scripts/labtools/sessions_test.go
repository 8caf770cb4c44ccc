package main

import (
	"bufio"
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// listen opens a loopback listener closed at the end of the test.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// runSessions runs n sessions against addr for d and returns the summary.
func runSessions(t *testing.T, addr string, n int, d time.Duration) SessionsSummary {
	t.Helper()
	s, _ := runSessionsReady(t, addr, n, d)
	return s
}

// runSessionsReady also returns what onReady was told: answered, failed.
func runSessionsReady(t *testing.T, addr string, n int, d time.Duration) (SessionsSummary, [2]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	c := &sessionClient{target: addr, interval: 20 * time.Millisecond, timeout: 2 * time.Second,
		stall: 150 * time.Millisecond}
	ready := make(chan [2]int, 1)
	s := c.runAll(ctx, n, time.Second, func(a, f int) { ready <- [2]int{a, f} })
	select {
	case r := <-ready:
		if r[0]+r[1] != n {
			t.Errorf("onReady(%d, %d): want %d sessions in all", r[0], r[1], n)
		}
		return s, r
	default:
		t.Error("onReady was not called although every session answered or failed")
	}
	return s, [2]int{}
}

func TestSessionsThroughEchoServerAllSurvive(t *testing.T) {
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { serveEcho(ctx, ln, 5*time.Second, 100, false); close(done) }()
	s := runSessions(t, ln.Addr().String(), 10, 400*time.Millisecond)
	cancel()
	<-done
	if s.Survived != 10 || s.Failed != 0 || s.Connected != 10 {
		t.Fatalf("want 10 of 10 surviving: %+v", s)
	}
	// each session answers every 20 ms for most of 400 ms
	if s.Answers < 10*8 {
		t.Errorf("only %d answers in 400 ms of 10 sessions at 20 ms", s.Answers)
	}
	if s.GapP50 < 15 {
		t.Errorf("median longest gap %.1f ms, below the 20 ms send interval", s.GapP50)
	}
}

// handler serves one connection of a scripted server.
type handler func(c *net.TCPConn, br *bufio.Reader)

func scripted(t *testing.T, h handler) string {
	t.Helper()
	ln := listen(t)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(3 * time.Second))
				h(c.(*net.TCPConn), bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String()
}

// echoLines echoes n lines, sleeping delay[i] before the i-th echo.
func echoLines(c *net.TCPConn, br *bufio.Reader, n int, delay map[int]time.Duration) bool {
	for i := range n {
		line, err := br.ReadString('\n')
		if err != nil {
			return false
		}
		time.Sleep(delay[i])
		if _, err := c.Write([]byte(line)); err != nil {
			return false
		}
	}
	return true
}

func TestSessionsCountResetsAndEOFs(t *testing.T) {
	reset := scripted(t, func(c *net.TCPConn, br *bufio.Reader) {
		if echoLines(c, br, 3, nil) {
			c.SetLinger(0) // close sends RST
		}
	})
	s := runSessions(t, reset, 5, 400*time.Millisecond)
	if s.Survived != 0 || s.Errors["reset"] != 5 || s.FirstFailure == "" {
		t.Errorf("want 5 resets: %+v", s)
	}

	// nothing listens: every session fails before its first answer, and
	// the ready callback says so
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	s, ready := runSessionsReady(t, addr, 4, 200*time.Millisecond)
	if s.Errors["connect"] != 4 || s.Connected != 0 || ready != [2]int{0, 4} {
		t.Errorf("want 4 connect failures reported as 0 answered, 4 failed: %+v, ready %v", s, ready)
	}

	eof := scripted(t, func(c *net.TCPConn, br *bufio.Reader) { echoLines(c, br, 2, nil) })
	s = runSessions(t, eof, 5, 400*time.Millisecond)
	if s.Survived != 0 || s.Errors["eof"] != 5 {
		t.Errorf("want 5 EOFs: %+v", s)
	}
}

func TestSessionsSeeAStallAndAHang(t *testing.T) {
	// the 4th echo comes 300 ms late: a stall, the session survives
	stall := scripted(t, func(c *net.TCPConn, br *bufio.Reader) {
		echoLines(c, br, 1000, map[int]time.Duration{3: 300 * time.Millisecond})
	})
	s := runSessions(t, stall, 3, 800*time.Millisecond)
	if s.Survived != 3 || s.Stalled != 3 || s.GapMax < 300 {
		t.Errorf("want 3 survivors that stalled once (gap >= 300 ms): %+v", s)
	}

	// no echo after the 2nd line: still waiting 1 s later, hung
	hang := scripted(t, func(c *net.TCPConn, br *bufio.Reader) {
		echoLines(c, br, 2, nil)
		time.Sleep(2 * time.Second)
	})
	s = runSessions(t, hang, 3, 1300*time.Millisecond)
	if s.Survived != 0 || s.Errors["hung"] != 3 {
		t.Errorf("want 3 hung sessions: %+v", s)
	}
}
