package dataplane

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// goTCPPair returns both ends of a fresh loopback TCP connection.
func goTCPPair(t testing.TB) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan *net.TCPConn, 1)
	go func() {
		c, _ := ln.AcceptTCP()
		acc <- c
	}()
	a, err = net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	b = <-acc
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// goProxied starts a GoEngine between two pairs and returns the outer ends
// (what the client and the server hold) and a channel of the done calls.
func goProxied(t testing.TB, idle time.Duration) (client, server *net.TCPConn, done <-chan Traffic) {
	t.Helper()
	client, pc := goTCPPair(t)
	ps, server := goTCPPair(t)
	ch := make(chan Traffic, 2)
	var calls atomic.Int32
	go NewGoEngine(nil).Proxy(pc, ps, idle, func(tr Traffic) {
		if calls.Add(1) != 1 {
			t.Error("done called twice")
		}
		ch <- tr
	})
	client.SetDeadline(time.Now().Add(20 * time.Second))
	server.SetDeadline(time.Now().Add(20 * time.Second))
	return client, server, ch
}

func goWaitDone(t testing.TB, done <-chan Traffic) Traffic {
	t.Helper()
	select {
	case tr := <-done:
		return tr
	case <-time.After(5 * time.Second):
		t.Fatal("done not called")
		return Traffic{}
	}
}

// TestGoEngineBulkBothWays pushes 16 MiB each way at once, in writes of
// random sizes, so both the buffered and the spliced paths run, and
// checks every byte and the counts.
func TestGoEngineBulkBothWays(t *testing.T) {
	client, server, done := goProxied(t, time.Minute)
	const size = 16 << 20
	send := func(c *net.TCPConn, seed uint64) []byte {
		r := rand.New(rand.NewPCG(seed, seed))
		h := sha256.New()
		buf := make([]byte, 256<<10)
		for sent := 0; sent < size; {
			n := min(1+r.IntN(len(buf)), size-sent)
			for i := range buf[:n] {
				buf[i] = byte(r.Uint32())
			}
			h.Write(buf[:n])
			if _, err := c.Write(buf[:n]); err != nil {
				t.Errorf("write: %v", err)
				return nil
			}
			sent += n
		}
		c.CloseWrite()
		return h.Sum(nil)
	}
	recv := func(c *net.TCPConn) ([]byte, int64) {
		h := sha256.New()
		n, err := io.Copy(h, c)
		if err != nil {
			t.Errorf("read: %v", err)
		}
		return h.Sum(nil), n
	}
	var wg sync.WaitGroup
	var upSent, downSent, upGot, downGot []byte
	var upN, downN int64
	wg.Go(func() { upSent = send(client, 1) })
	wg.Go(func() { downSent = send(server, 2) })
	wg.Go(func() { upGot, upN = recv(server) })
	wg.Go(func() { downGot, downN = recv(client) })
	wg.Wait()
	if upN != size || downN != size || !bytes.Equal(upSent, upGot) || !bytes.Equal(downSent, downGot) {
		t.Fatalf("up %d bytes (match %v), down %d bytes (match %v)", upN, bytes.Equal(upSent, upGot),
			downN, bytes.Equal(downSent, downGot))
	}
	if tr := goWaitDone(t, done); tr.In != size || tr.Out != size {
		t.Fatalf("done(%+v), want %d each way", tr, size)
	}
}

// TestGoEngineResetPassedOn: a server that resets makes the client see a
// reset, not a clean EOF that could pass for a complete answer.
func TestGoEngineResetPassedOn(t *testing.T) {
	client, server, done := goProxied(t, time.Minute)
	io.WriteString(client, "request")
	buf := make([]byte, 7)
	if _, err := io.ReadFull(server, buf); err != nil {
		t.Fatal(err)
	}
	server.SetLinger(0)
	server.Close()
	_, err := io.ReadAll(client)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read err = %v, want a reset", err)
	}
	if tr := goWaitDone(t, done); tr.In != 7 || tr.Out != 0 {
		t.Fatalf("done(%+v)", tr)
	}
}

// TestGoEngineIdle: silence both ways for idle closes both sides with a
// FIN; with idle 0 the connection outlives any such wait.
func TestGoEngineIdle(t *testing.T) {
	client, server, done := goProxied(t, 200*time.Millisecond)
	start := time.Now()
	if b, err := io.ReadAll(client); err != nil || len(b) != 0 {
		t.Fatalf("client: %q, %v; want EOF", b, err)
	}
	if b, err := io.ReadAll(server); err != nil || len(b) != 0 {
		t.Fatalf("server: %q, %v; want EOF", b, err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > time.Second {
		t.Errorf("closed after %v", d)
	}
	goWaitDone(t, done)

	client, server, done = goProxied(t, 0)
	time.Sleep(300 * time.Millisecond)
	io.WriteString(client, "x")
	b := make([]byte, 1)
	if _, err := io.ReadFull(server, b); err != nil {
		t.Fatalf("with no idle timeout: %v", err)
	}
	client.Close()
	server.Close()
	goWaitDone(t, done)
}

// TestGoEngineIdleSpliced: a stalled reader under a bulk sender is idle
// too, even though the splice path holds the bytes.
func TestGoEngineStalledReader(t *testing.T) {
	client, _, done := goProxied(t, 300*time.Millisecond)
	chunk := make([]byte, 1<<20)
	var err error
	for range 64 { // far more than the socket buffers hold
		if _, err = client.Write(chunk); err != nil {
			break
		}
	}
	if err == nil {
		t.Fatal("64 MiB went to a server that reads nothing")
	}
	goWaitDone(t, done)
}
