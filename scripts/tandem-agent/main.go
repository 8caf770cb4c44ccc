// Command tandem-agent is the reference load agent for a Tandem cluster's
// `agent:` key: run it on each server. To every TCP connection it answers
// one ASCII integer and a newline, then closes:
//
//   - 0..100, the 1-minute load average as a share of max-load (the CPU
//     count by default): a load average equal to the CPU count is 100;
//   - -1 ("take me out") while the drain file exists, so an operator or a
//     deploy script drains the server with `touch` and brings it back
//     with `rm`.
//
// Tandem scales the server's weight by (100 − load) / 100, at least
// 1/100 (README, "Load feedback (agent)").
//
//	tandem-agent [-listen :1510] [-max-load N] [-drain-file /run/tandem-agent.drain]
//
// The agent answers anyone who connects: bind it to the address the load
// balancers reach, or filter its port. Stdlib only.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func main() {
	listen := flag.String("listen", ":1510", "address:port to answer on")
	maxLoad := flag.Float64("max-load", float64(runtime.NumCPU()), "load average reported as 100 [the CPU count]")
	drainFile := flag.String("drain-file", "/run/tandem-agent.drain", "while this file exists, answer -1 (drain)")
	loadavg := flag.String("loadavg", "/proc/loadavg", "where the load average is read")
	flag.Parse()
	if *maxLoad <= 0 {
		log.Fatalf("tandem-agent: -max-load must be > 0 (got %v)", *maxLoad)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("tandem-agent: %v", err)
	}
	log.Printf("tandem-agent: answering on %s (load average %.2f = 100, drain file %s)", ln.Addr(), *maxLoad, *drainFile)
	for {
		conn, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			log.Fatalf("tandem-agent: accept: %v", err)
		}
		// One short write per connection, no goroutine: a reply fits any
		// socket buffer, so a client that never reads cannot hold us up.
		if n, ok := reply(*loadavg, *drainFile, *maxLoad); ok {
			_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = fmt.Fprintf(conn, "%d\n", n)
		}
		_ = conn.Close()
	}
}

// reply is the agent's answer now: -1 while drainFile exists, else the
// load. When the load average cannot be read it reports false and the
// connection is closed without a reply, which Tandem treats as an agent
// that does not answer (the configured weight): better than a made-up
// load.
func reply(loadavgPath, drainFile string, maxLoad float64) (int, bool) {
	if _, err := os.Stat(drainFile); err == nil {
		return -1, true
	}
	b, err := os.ReadFile(loadavgPath)
	if err != nil {
		log.Printf("tandem-agent: %v", err)
		return 0, false
	}
	l, err := loadPercent(string(b), maxLoad)
	if err != nil {
		log.Printf("tandem-agent: %v", err)
		return 0, false
	}
	return l, true
}

// loadPercent turns /proc/loadavg's text into 0..100: the 1-minute load
// average over maxLoad, rounded, at most 100.
func loadPercent(loadavg string, maxLoad float64) (int, error) {
	f := strings.Fields(loadavg)
	if len(f) == 0 {
		return 0, fmt.Errorf("empty load average")
	}
	l1, err := strconv.ParseFloat(f[0], 64)
	if err != nil || l1 < 0 || math.IsNaN(l1) {
		return 0, fmt.Errorf("load average %q: not a number", f[0])
	}
	return int(min(math.Round(l1/maxLoad*100), 100)), nil
}
