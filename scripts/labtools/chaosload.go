package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// load is the chaos suite's client side: sticky clients, each with an
// address of its own, making one TCP (HTTP) and one UDP request through
// the VIPs every period; and two probers, TCP and UDP, launching a probe
// every interval from the client's own address, for the outages.
type load struct {
	tcpTarget, udpTarget string // VIP:port
	clients              []netip.Addr
	period               time.Duration
	reqTimeout           time.Duration

	mu   sync.Mutex
	recs []LoadRec

	tcpProbe, udpProbe *probeLog
}

// probeLog keeps one prober's results in launch order.
type probeLog struct {
	mu   sync.Mutex
	rs   []Result
	done []bool
}

// completed returns the results before the first still in flight.
func (p *probeLog) completed() []Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for n < len(p.done) && p.done[n] {
		n++
	}
	return append([]Result(nil), p.rs[:n]...)
}

// runProber launches pr.once every interval until ctx ends, into pl.
func runProber(ctx context.Context, pr *prober, interval time.Duration, pl *probeLog, wg *sync.WaitGroup) {
	defer wg.Done()
	pr.launch(ctx, interval, func(seq int, at time.Time) {
		pl.mu.Lock()
		pl.rs = append(pl.rs, Result{Seq: seq, At: at})
		pl.done = append(pl.done, false)
		pl.mu.Unlock()
	}, func(r Result) {
		pl.mu.Lock()
		pl.rs[r.Seq] = r
		pl.done[r.Seq] = true
		pl.mu.Unlock()
	})
}

// start runs the probers and the clients until ctx ends; wg tracks them.
func (l *load) start(ctx context.Context, probeInterval time.Duration, wg *sync.WaitGroup) {
	l.tcpProbe, l.udpProbe = &probeLog{}, &probeLog{}
	host, _, _ := net.SplitHostPort(l.tcpTarget)
	wg.Add(2)
	go runProber(ctx, &prober{target: l.tcpTarget, timeout: 50 * time.Millisecond,
		send: "GET / HTTP/1.0\r\nHost: " + host + "\r\n\r\n"}, probeInterval, l.tcpProbe, wg)
	go runProber(ctx, &prober{target: l.udpTarget, timeout: 50 * time.Millisecond, udp: true},
		probeInterval, l.udpProbe, wg)
	n := len(l.clients)
	for i, a := range l.clients {
		wg.Add(1)
		// spread evenly over the period
		offset := time.Duration(int64(l.period) * int64(i) / int64(n))
		go l.client(ctx, a, offset, wg)
	}
}

func (l *load) client(ctx context.Context, a netip.Addr, offset time.Duration, wg *sync.WaitGroup) {
	defer wg.Done()
	next := time.Now().Add(offset)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		at := time.Now()
		s := httpVia(l.tcpTarget, a, l.reqTimeout)
		l.add(LoadRec{At: at, Client: a.String(), Proto: "tcp", Server: s})
		at = time.Now()
		s = udpVia(l.udpTarget, a, l.reqTimeout)
		l.add(LoadRec{At: at, Client: a.String(), Proto: "udp", Server: s})
		next = next.Add(l.period)
		if now := time.Now(); next.Before(now) {
			next = now // a slow round does not cause a burst
		}
	}
}

func (l *load) add(r LoadRec) {
	l.mu.Lock()
	l.recs = append(l.recs, r)
	l.mu.Unlock()
}

func (l *load) records() []LoadRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]LoadRec(nil), l.recs...)
}

// httpVia makes one HTTP/1.0 GET over a new connection from a and
// returns the body's first line, "" on any failure or non-200 answer.
func httpVia(target string, a netip.Addr, timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	d := net.Dialer{Deadline: deadline, LocalAddr: &net.TCPAddr{IP: a.AsSlice()}}
	c, err := d.Dial("tcp4", target)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(deadline)
	host, _, _ := net.SplitHostPort(target)
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: "+host+"\r\n\r\n"); err != nil {
		return ""
	}
	b, err := io.ReadAll(io.LimitReader(c, 4096))
	if err != nil {
		return ""
	}
	return parseHTTPName(b)
}

// parseHTTPName returns the first body line of a 200 response, "" else.
func parseHTTPName(b []byte) string {
	line, _, ok := bytes.Cut(b, []byte("\r\n"))
	if !ok {
		return ""
	}
	f := strings.Fields(string(line))
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") || f[1] != "200" {
		return ""
	}
	_, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok {
		return ""
	}
	first, _ := bufio.NewReader(bytes.NewReader(body)).ReadString('\n')
	return strings.TrimSpace(first)
}

// udpVia sends one datagram from a (a new port each time) and returns the
// answer's first line, "" when none came in time.
func udpVia(target string, a netip.Addr, timeout time.Duration) string {
	raddr, err := net.ResolveUDPAddr("udp4", target)
	if err != nil {
		return ""
	}
	c, err := net.DialUDP("udp4", &net.UDPAddr{IP: a.AsSlice()}, raddr)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("client\n")); err != nil {
		return ""
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return ""
	}
	s, _, _ := strings.Cut(string(buf[:n]), "\n")
	return strings.TrimSpace(s)
}
