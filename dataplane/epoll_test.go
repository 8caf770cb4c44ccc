//go:build linux

package dataplane

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// epollHarness is an engine with its Run goroutine, a front listener the
// tests dial as clients, and a helper to proxy each accepted connection to
// a backend.
type epollHarness struct {
	t      *testing.T
	e      *EpollEngine
	cancel context.CancelFunc
	ran    chan struct{}
	front  *net.TCPListener
}

// newEpollHarness starts an engine; tune may adjust it before Run.
func newEpollHarness(t *testing.T, loops int, tune func(*EpollEngine)) *epollHarness {
	t.Helper()
	e, err := NewEpollEngine(loops, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(e)
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &epollHarness{t: t, e: e, cancel: cancel, ran: make(chan struct{}), front: ln}
	go func() { e.Run(ctx); close(h.ran) }()
	t.Cleanup(func() { h.stop(); ln.Close() })
	return h
}

// stop ends Run and waits for it.
func (h *epollHarness) stop() {
	h.cancel()
	select {
	case <-h.ran:
	case <-time.After(10 * time.Second):
		h.t.Error("Run did not return")
	}
}

// dial opens a client connection through the engine to backend and
// returns the client end; done gets the connection's traffic.
func (h *epollHarness) dial(backend net.Addr, idle time.Duration, done func(Traffic)) *net.TCPConn {
	h.t.Helper()
	client, err := net.DialTCP("tcp", nil, h.front.Addr().(*net.TCPAddr))
	if err != nil {
		h.t.Fatal(err)
	}
	pc, err := h.front.AcceptTCP()
	if err != nil {
		h.t.Fatal(err)
	}
	ps, err := net.DialTCP("tcp", nil, backend.(*net.TCPAddr))
	if err != nil {
		h.t.Fatal(err)
	}
	h.e.Proxy(pc, ps, idle, done)
	h.t.Cleanup(func() { client.Close() })
	return client
}

// serveTCP runs handle for each connection to a new loopback listener.
func serveTCP(t *testing.T, handle func(*net.TCPConn)) net.Addr {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); handle(c) })
		}
	})
	return ln.Addr()
}

func echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// doneChan returns a done func that sends on a channel, and the channel.
func doneChan() (func(Traffic), chan Traffic) {
	ch := make(chan Traffic, 1)
	return func(t Traffic) { ch <- t }, ch
}

func waitDone(t *testing.T, ch chan Traffic) Traffic {
	t.Helper()
	select {
	case tr := <-ch:
		return tr
	case <-time.After(10 * time.Second):
		t.Fatal("done not called")
	}
	return Traffic{}
}

// spliceModes runs f with splice never, always, and after the default
// (also with the loops blocking in epoll_wait, the fallback should Go's
// poller refuse an epoll descriptor).
func spliceModes(t *testing.T, f func(t *testing.T, tune func(*EpollEngine))) {
	for _, m := range []struct {
		name  string
		after int64
		block bool
	}{{"copy", -1, false}, {"splice", 0, false}, {"auto", epollSpliceAfter, false}, {"auto-blocking-wait", epollSpliceAfter, true}} {
		t.Run(m.name, func(t *testing.T) {
			f(t, func(e *EpollEngine) { e.spliceAfter, e.blockWait = m.after, m.block })
		})
	}
}

func TestEpollEcho(t *testing.T) {
	spliceModes(t, func(t *testing.T, tune func(*EpollEngine)) {
		h := newEpollHarness(t, 2, tune)
		back := serveTCP(t, echo)
		done, ch := doneChan()
		c := h.dial(back, 0, done)
		for _, msg := range []string{"hello", "world, a little longer"} {
			if _, err := c.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
				t.Fatalf("echo %q: got %q, %v", msg, got, err)
			}
		}
		c.CloseWrite()
		if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
			t.Fatalf("after half-close: %q, %v", rest, err)
		}
		if tr := waitDone(t, ch); tr != (Traffic{In: 27, Out: 27}) {
			t.Fatalf("traffic %+v", tr)
		}
		if s := h.e.Stats(); s.Conns != 0 || s.Loops != 2 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// stream is n pseudo-random bytes written in pieces of random size, with
// the chunk number stamped in so reordering shows.
func stream(seed uint64, n int, w io.Writer) (uint32, error) {
	r := rand.New(rand.NewPCG(seed, 1))
	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = byte(r.Uint32())
	}
	sum := crc32.NewIEEE()
	for off := 0; off < n; {
		k := min(1+r.IntN(256<<10), n-off)
		b := block[off%len(block):][:min(k, len(block)-off%len(block))]
		b[0] = byte(off >> 20)
		sum.Write(b)
		if _, err := w.Write(b); err != nil {
			return 0, err
		}
		off += len(b)
	}
	return sum.Sum32(), nil
}

// drain reads to EOF, pausing now and then when slow, and returns the
// checksum and length.
func drain(r io.Reader, slow bool) (uint32, int, error) {
	sum := crc32.NewIEEE()
	buf := make([]byte, 32<<10)
	n := 0
	for {
		k, err := r.Read(buf)
		sum.Write(buf[:k])
		if slow && n/(4<<20) != (n+k)/(4<<20) {
			time.Sleep(2 * time.Millisecond)
		}
		n += k
		if err == io.EOF {
			return sum.Sum32(), n, nil
		}
		if err != nil {
			return 0, n, err
		}
	}
}

// TestEpollLargeBothWays sends 64 MiB each way at once, with slow readers
// now and then, so partial writes, remainders and EPOLLOUT all happen.
func TestEpollLargeBothWays(t *testing.T) {
	const size = 64 << 20
	spliceModes(t, func(t *testing.T, tune func(*EpollEngine)) {
		h := newEpollHarness(t, 2, tune)
		type result struct {
			sent, got uint32
			n         int
			err       error
		}
		backRes := make(chan result, 1)
		back := serveTCP(t, func(c *net.TCPConn) {
			var r result
			var wg sync.WaitGroup
			wg.Go(func() {
				r.sent, r.err = stream(2, size, c)
				c.CloseWrite()
			})
			got, n, err := drain(c, true)
			wg.Wait()
			r.got, r.n, r.err = got, n, errors.Join(r.err, err)
			backRes <- r
		})
		done, ch := doneChan()
		c := h.dial(back, 0, done)
		var sent uint32
		var serr error
		var wg sync.WaitGroup
		wg.Go(func() {
			sent, serr = stream(1, size, c)
			c.CloseWrite()
		})
		got, n, err := drain(c, true)
		wg.Wait()
		if err != nil || serr != nil {
			t.Fatal(err, serr)
		}
		b := <-backRes
		if b.err != nil {
			t.Fatal(b.err)
		}
		if n != size || b.n != size || got != b.sent || b.got != sent {
			t.Fatalf("client got %d bytes crc %x (sent %x); server got %d crc %x (sent %x)",
				n, got, b.sent, b.n, b.got, sent)
		}
		if tr := waitDone(t, ch); tr != (Traffic{In: size, Out: size}) {
			t.Fatalf("traffic %+v", tr)
		}
		s := h.e.Stats()
		t.Logf("stats %+v", s)
		if s.SpliceBytes+s.CopyBytes != 2*size {
			t.Fatalf("stats count %d bytes, want %d", s.SpliceBytes+s.CopyBytes, 2*size)
		}
		switch after := h.e.spliceAfter; {
		case after < 0 && s.SpliceBytes != 0, after == 0 && s.CopyBytes != 0, after > 0 && s.SpliceBytes < size:
			t.Fatalf("spliceAfter %d: %d bytes spliced, %d copied", after, s.SpliceBytes, s.CopyBytes)
		}
		if s.Stalls == 0 {
			t.Fatal("no destination was ever full: EPOLLOUT untested")
		}
	})
}

// TestEpollHalfClose passes a FIN each way while the other way still
// carries data.
func TestEpollHalfClose(t *testing.T) {
	spliceModes(t, func(t *testing.T, tune func(*EpollEngine)) {
		h := newEpollHarness(t, 1, tune)
		t.Run("client first", func(t *testing.T) {
			back := serveTCP(t, func(c *net.TCPConn) {
				req, _ := io.ReadAll(c) // to the client's FIN
				c.Write(append([]byte("re: "), req...))
			})
			done, ch := doneChan()
			c := h.dial(back, 0, done)
			c.Write([]byte("ping"))
			c.CloseWrite()
			if got, err := io.ReadAll(c); err != nil || string(got) != "re: ping" {
				t.Fatalf("got %q, %v", got, err)
			}
			if tr := waitDone(t, ch); tr != (Traffic{In: 4, Out: 8}) {
				t.Fatalf("traffic %+v", tr)
			}
		})
		t.Run("server first", func(t *testing.T) {
			got := make(chan string, 1)
			back := serveTCP(t, func(c *net.TCPConn) {
				c.Write([]byte("banner"))
				c.CloseWrite()
				b, _ := io.ReadAll(c)
				got <- string(b)
			})
			done, ch := doneChan()
			c := h.dial(back, 0, done)
			if b, err := io.ReadAll(c); err != nil || string(b) != "banner" {
				t.Fatalf("got %q, %v", b, err)
			}
			// The server's FIN arrived; the client can still talk.
			time.Sleep(20 * time.Millisecond)
			c.Write([]byte("still here"))
			c.CloseWrite()
			if s := <-got; s != "still here" {
				t.Fatalf("server got %q", s)
			}
			if tr := waitDone(t, ch); tr != (Traffic{In: 10, Out: 6}) {
				t.Fatalf("traffic %+v", tr)
			}
		})
	})
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// TestEpollReset: a reset from either side ends the connection; the other
// side sees a reset (or EOF), and done is called.
func TestEpollReset(t *testing.T) {
	h := newEpollHarness(t, 1, nil)
	t.Run("server resets", func(t *testing.T) {
		back := serveTCP(t, func(c *net.TCPConn) {
			b := make([]byte, 4)
			io.ReadFull(c, b)
			c.SetLinger(0)
		})
		done, ch := doneChan()
		c := h.dial(back, 0, done)
		c.Write([]byte("boom"))
		_, err := io.ReadAll(c)
		if err != nil && !isReset(err) {
			t.Fatalf("client read: %v", err)
		}
		t.Logf("client saw %v", err)
		if tr := waitDone(t, ch); tr.In != 4 {
			t.Fatalf("traffic %+v", tr)
		}
	})
	t.Run("client resets", func(t *testing.T) {
		seen := make(chan error, 1)
		back := serveTCP(t, func(c *net.TCPConn) {
			c.Write([]byte("hi"))
			_, err := io.ReadAll(c)
			seen <- err
		})
		done, ch := doneChan()
		c := h.dial(back, 0, done)
		b := make([]byte, 2)
		io.ReadFull(c, b)
		c.SetLinger(0)
		c.Close()
		if err := <-seen; err != nil && !isReset(err) {
			t.Fatalf("server read: %v", err)
		} else {
			t.Logf("server saw %v", err)
		}
		if tr := waitDone(t, ch); tr.Out != 2 {
			t.Fatalf("traffic %+v", tr)
		}
	})
}

// TestEpollIdleTimeout: a silent connection is closed after its timeout;
// one that keeps talking is not.
func TestEpollIdleTimeout(t *testing.T) {
	for _, block := range []bool{false, true} {
		t.Run(map[bool]string{false: "go-poller", true: "blocking-wait"}[block], func(t *testing.T) {
			testEpollIdleTimeout(t, block)
		})
	}
}

func testEpollIdleTimeout(t *testing.T, block bool) {
	h := newEpollHarness(t, 1, func(e *EpollEngine) { e.sweepEvery, e.blockWait = 20*time.Millisecond, block })
	back := serveTCP(t, echo)
	silentDone, silentCh := doneChan()
	start := time.Now()
	silent := h.dial(back, 150*time.Millisecond, silentDone)
	busyDone, busyCh := doneChan()
	busy := h.dial(back, 150*time.Millisecond, busyDone)
	b := make([]byte, 1)
	for range 20 { // 400 ms of traffic every 20 ms
		busy.Write([]byte("x"))
		if _, err := io.ReadFull(busy, b); err != nil {
			t.Fatalf("busy connection: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(b); err != io.EOF {
		t.Fatalf("silent connection read: %v, want EOF", err)
	}
	waitDone(t, silentCh)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("closed after %v", d)
	}
	select {
	case <-busyCh:
		t.Fatal("busy connection timed out")
	default:
	}
	if s := h.e.Stats(); s.Timeouts != 1 {
		t.Fatalf("timeouts %d", s.Timeouts)
	}
	busy.Close()
	waitDone(t, busyCh)
}

// TestEpollPanicInDone: a panicking done is contained; the loop serves on.
func TestEpollPanicInDone(t *testing.T) {
	h := newEpollHarness(t, 1, nil)
	back := serveTCP(t, echo)
	c := h.dial(back, 0, func(Traffic) { panic("done exploded") })
	c.CloseWrite()
	io.ReadAll(c)
	done, ch := doneChan()
	c = h.dial(back, 0, done)
	c.Write([]byte("ok"))
	c.CloseWrite()
	if b, err := io.ReadAll(c); err != nil || !bytes.Equal(b, []byte("ok")) {
		t.Fatalf("after a panic: %q, %v", b, err)
	}
	waitDone(t, ch)
}

// TestEpollRunEnd: the end of Run closes every connection and calls every
// done once; Proxy before Run waits for it, Proxy after Run closes at once.
func TestEpollRunEnd(t *testing.T) {
	e, err := NewEpollEngine(2, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &epollHarness{t: t, e: e, ran: make(chan struct{})}
	h.front, err = net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.front.Close()
	back := serveTCP(t, echo)
	const n = 50
	var calls [n + 1]atomic.Int32
	clients := make([]*net.TCPConn, n+1)
	for i := range n { // before Run
		clients[i] = h.dial(back, 0, func(Traffic) { calls[i].Add(1) })
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { e.Run(ctx); close(h.ran) }()
	for i, c := range clients[:n] {
		c.Write([]byte("x"))
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
	}
	if s := e.Stats(); s.Conns != n {
		t.Fatalf("conns %d", s.Conns)
	}
	h.stop()
	for i, c := range clients[:n] {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF && !isReset(err) {
			t.Fatalf("conn %d after Run: %v", i, err)
		}
		if k := calls[i].Load(); k != 1 {
			t.Fatalf("conn %d: done called %d times", i, k)
		}
	}
	clients[n] = h.dial(back, 0, func(Traffic) { calls[n].Add(1) }) // after Run
	if k := calls[n].Load(); k != 1 {
		t.Fatalf("Proxy after Run: done called %d times", k)
	}
	if s := e.Stats(); s.Conns != 0 {
		t.Fatalf("conns %d after Run", s.Conns)
	}
}

// TestEpollDoneOnceUnderRaces ends connections every way at once (FIN,
// reset, timeout, end of Run) and checks each done ran exactly once.
func TestEpollDoneOnceUnderRaces(t *testing.T) {
	h := newEpollHarness(t, 2, func(e *EpollEngine) { e.sweepEvery = 5 * time.Millisecond })
	back := serveTCP(t, func(c *net.TCPConn) {
		b := make([]byte, 1)
		if _, err := c.Read(b); err != nil {
			return
		}
		switch b[0] % 3 {
		case 0:
			c.Write(b)
		case 1:
			c.SetLinger(0)
		case 2:
			io.Copy(c, c)
		}
	})
	const n = 300
	var calls [n]atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		c := h.dial(back, time.Duration(i%7)*10*time.Millisecond, func(Traffic) { calls[i].Add(1) })
		wg.Go(func() {
			c.Write([]byte{byte(i)})
			if i%5 == 0 {
				c.SetLinger(0)
				c.Close()
				return
			}
			c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			io.Copy(io.Discard, c)
		})
	}
	wg.Wait()
	h.stop()
	for i := range n {
		if k := calls[i].Load(); k != 1 {
			t.Fatalf("conn %d: done called %d times", i, k)
		}
	}
}

// TestEpollBlockingDescriptors: connections whose descriptors were made
// blocking still never block a loop, copying or splicing.
func TestEpollBlockingDescriptors(t *testing.T) {
	spliceModes(t, func(t *testing.T, tune func(*EpollEngine)) {
		h := newEpollHarness(t, 1, tune)
		back := serveTCP(t, echo)
		client, err := net.DialTCP("tcp", nil, h.front.Addr().(*net.TCPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		pc, err := h.front.AcceptTCP()
		if err != nil {
			t.Fatal(err)
		}
		ps, err := net.DialTCP("tcp", nil, back.(*net.TCPAddr))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []*net.TCPConn{pc, ps} {
			rc, _ := c.SyscallConn()
			rc.Control(func(fd uintptr) { syscall.SetNonblock(int(fd), false) })
		}
		done, ch := doneChan()
		h.e.Proxy(pc, ps, 0, done)
		const size = 8 << 20
		sentc := make(chan uint32, 1)
		go func() {
			sum, _ := stream(3, size, client)
			client.CloseWrite()
			sentc <- sum
		}()
		got, n, err := drain(client, false)
		if err != nil || n != size {
			t.Fatalf("%d bytes, %v", n, err)
		}
		sent := <-sentc
		if tr := waitDone(t, ch); tr != (Traffic{In: size, Out: size}) || got != sent {
			t.Fatalf("traffic %+v, crc %x want %x", tr, got, sent)
		}
	})
}

// TestEpollSpliceBackToCopy: a direction that spliced a bulk transfer
// copies again once its messages are small.
func TestEpollSpliceBackToCopy(t *testing.T) {
	h := newEpollHarness(t, 1, nil)
	back := serveTCP(t, echo)
	done, ch := doneChan()
	c := h.dial(back, 0, done)
	go stream(4, 8<<20, c)
	if _, err := io.ReadFull(c, make([]byte, 8<<20)); err != nil {
		t.Fatal(err)
	}
	bulk := h.e.Stats()
	if bulk.SpliceBytes == 0 {
		t.Fatalf("bulk phase did not splice: %+v", bulk)
	}
	b := make([]byte, 100)
	for range 50 {
		c.Write(b)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
	}
	small := h.e.Stats()
	if copies := small.Copies - bulk.Copies; copies < 90 {
		t.Fatalf("%d copies for 100 small messages (stats %+v)", copies, small)
	}
	c.CloseWrite()
	io.ReadAll(c)
	waitDone(t, ch)
}
