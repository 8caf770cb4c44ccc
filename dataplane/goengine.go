package dataplane

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Buffer and splice sizes of GoEngine.
const (
	// copyBufSize is the pooled buffer for small transfers.
	copyBufSize = 32 << 10
	// spliceMin is the queued-byte count from which a transfer is spliced
	// rather than copied: splice costs two syscalls and a pipe per burst,
	// which pays for bulk and loses on request/response traffic.
	spliceMin = copyBufSize
	// deadlineEvery is the least time between two deadline refreshes of a
	// direction that keeps moving bytes: setting a deadline on every read
	// would cost a timer update per read.
	deadlineEvery = time.Second
)

// GoEngine is the goroutine-per-direction Engine, the correctness
// baseline. Each direction waits until its source is readable without
// holding any buffer or pipe (so an idle connection costs two sockets and
// two goroutine stacks), then moves what is queued: a large backlog by
// splice(2) through Go's io.ReaderFrom on *net.TCPConn, a small one
// through a pooled buffer. EOF on one side becomes CloseWrite on the
// other; a reset or error aborts both, passing the reset on. The idle
// timeout is enforced with deadlines refreshed at most once a second per
// direction. The zero value is ready to use.
type GoEngine struct {
	// Log receives recovered panics; nil discards them.
	Log *slog.Logger

	bufs   sync.Pool // *[]byte of copyBufSize
	panics atomic.Uint64
}

// NewGoEngine returns a GoEngine logging to log.
func NewGoEngine(log *slog.Logger) *GoEngine { return &GoEngine{Log: log} }

// Panics counts panics recovered in connection handling.
func (e *GoEngine) Panics() uint64 { return e.panics.Load() }

// Proxy moves bytes until both directions have ended or nothing moved for
// idle (0: no limit), then closes both connections and calls done. It
// runs one direction in the calling goroutine and the other in a
// goroutine it waits for, so it returns when the connection is over.
func (e *GoEngine) Proxy(client, server *net.TCPConn, idle time.Duration, done func(Traffic)) {
	p := &goProxy{eng: e, client: client, server: server, idle: idle, start: time.Now()}
	if idle > 0 {
		client.SetDeadline(p.start.Add(idle))
		server.SetDeadline(p.start.Add(idle))
	}
	up := p.newHalf(client, server)
	downDone := make(chan struct{})
	down := p.newHalf(server, client)
	go func() {
		defer close(downDone)
		down.run()
	}()
	up.run()
	<-downDone
	client.Close()
	server.Close()
	done(Traffic{In: up.n, Out: down.n})
}

// goProxy is one proxied connection of a GoEngine.
type goProxy struct {
	eng            *GoEngine
	client, server *net.TCPConn
	idle           time.Duration
	start          time.Time    // monotonic base of last
	last           atomic.Int64 // nanoseconds after start of the last transfer
	abortOnce      sync.Once
}

// abort ends the connection in both directions at once: closing the
// sockets wakes the other direction. With reset the peers get an RST,
// as they would from the box that failed.
func (p *goProxy) abort(reset bool) {
	p.abortOnce.Do(func() {
		if reset {
			p.client.SetLinger(0)
			p.server.SetLinger(0)
		}
		p.client.Close()
		p.server.Close()
	})
}

// half is one direction of a goProxy: src → dst.
type half struct {
	p        *goProxy
	src, dst *net.TCPConn
	n        uint64        // bytes moved
	setAt    time.Duration // when the deadlines were last pushed, after p.start
	lr       io.LimitedReader
	wait     readiness
}

func (p *goProxy) newHalf(src, dst *net.TCPConn) *half {
	h := &half{p: p, src: src, dst: dst}
	h.lr.R = src
	h.wait.init(src)
	return h
}

// run moves bytes until EOF (passed on as CloseWrite), an error or idle
// (both abort the connection).
func (h *half) run() {
	defer func() {
		if r := recover(); r != nil {
			h.p.eng.panics.Add(1)
			if log := h.p.eng.Log; log != nil {
				log.Error("panic in proxied connection", "panic", r, "stack", string(debug.Stack()))
			}
			h.p.abort(true)
		}
	}()
	for {
		avail, err := h.wait.readable()
		switch {
		case err != nil && h.stillBusy(err):
			continue
		case err != nil:
			h.fail(err)
			return
		case avail == 0:
			h.dst.CloseWrite()
			return
		case avail >= spliceMin:
			err = h.splice(avail)
		default:
			err = h.copy()
		}
		if err == io.EOF {
			h.dst.CloseWrite()
			return
		}
		if err != nil {
			h.fail(err)
			return
		}
	}
}

// splice moves the n queued bytes with splice(2). The write deadline is
// pushed first: data already in Go's pipe is lost if a write times out,
// so a splice only times out after a full idle period of a stalled peer,
// and then the connection is aborted anyway.
func (h *half) splice(n int) error {
	if h.p.idle > 0 {
		h.dst.SetWriteDeadline(time.Now().Add(h.p.idle))
	}
	h.lr.N = int64(n)
	w, err := h.dst.ReadFrom(&h.lr)
	h.moved(w)
	return err
}

// copy moves what one read returns through a pooled buffer.
func (h *half) copy() error {
	bp := h.p.eng.getBuf()
	defer h.p.eng.bufs.Put(bp)
	buf := *bp
	for {
		n, err := h.src.Read(buf)
		if n > 0 {
			if werr := h.write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil && h.stillBusy(err) {
			continue // a blocking read off Linux timed out early
		}
		return err
	}
}

// write writes b in full, riding out write timeouts while the connection
// is not idle.
func (h *half) write(b []byte) error {
	for len(b) > 0 {
		n, err := h.dst.Write(b)
		h.moved(int64(n))
		b = b[n:]
		if err != nil && !h.stillBusy(err) {
			return err
		}
	}
	return nil
}

// moved records a transfer and pushes the deadlines if the last push was
// more than deadlineEvery ago.
func (h *half) moved(n int64) {
	if n <= 0 {
		return
	}
	h.n += uint64(n)
	if h.p.idle <= 0 {
		return
	}
	now := time.Since(h.p.start)
	h.p.last.Store(int64(now))
	if now-h.setAt >= deadlineEvery {
		h.push(now + h.p.idle)
	}
}

// push sets this direction's deadlines (source reads, destination writes)
// to at, after p.start.
func (h *half) push(at time.Duration) {
	h.setAt = time.Since(h.p.start)
	t := h.p.start.Add(at)
	h.src.SetReadDeadline(t)
	h.dst.SetWriteDeadline(t)
}

// stillBusy reports whether err is a deadline that fired although the
// connection moved bytes (in either direction) less than idle ago; if so
// it pushes the deadlines to idle after that last transfer.
func (h *half) stillBusy(err error) bool {
	if h.p.idle <= 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	last := time.Duration(h.p.last.Load())
	if time.Since(h.p.start)-last >= h.p.idle {
		return false
	}
	h.push(last + h.p.idle)
	return true
}

func (e *GoEngine) getBuf() *[]byte {
	if bp, ok := e.bufs.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, copyBufSize)
	return &b
}

// fail aborts the connection after err: quietly (FIN) when it went idle,
// with a reset for anything else (a peer's reset, a broken pipe), which
// is what the other peer would have seen without a proxy in between.
func (h *half) fail(err error) {
	h.p.abort(!errors.Is(err, os.ErrDeadlineExceeded))
}
