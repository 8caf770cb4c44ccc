//go:build linux

package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// EpollEngine is an Engine built on epoll event loops. Each loop is one
// goroutine with its own epoll descriptor, a shared 64 KiB buffer and a
// small pool of pipes; a proxied connection belongs to one loop for its
// life and costs, while idle, its two descriptors and a ~300-byte struct:
// no goroutine and no buffer. A direction whose destination cannot take
// everything read keeps the remainder in a pooled buffer (or in its pipe)
// and stops reading until the destination drains. A direction that has
// moved 256 KiB and still fills the 64 KiB buffer at a read switches to
// splice(2) through a pooled pipe, which saves the two user-space copies
// of bulk transfers (3× less proxy CPU per byte on loopback); it goes back
// to copying when a splice moves under 16 KiB, since for small messages
// read and write cost fewer calls.
//
// Proxy may be called before Run (the connections wait for the loops to
// start) and after Run has returned (the connections are closed at once);
// Run must be called for proxied connections to move.
type EpollEngine struct {
	log   *slog.Logger
	loops []*eloop
	next  atomic.Uint32
	ran   atomic.Bool

	// sweepEvery is the idle-timeout granularity.
	sweepEvery time.Duration
	// spliceAfter is how many bytes a direction moves through the shared
	// buffer before a read that fills it switches the direction to
	// splice; a splice that moves under epollSpliceSmall switches it back.
	// Zero: always splice; negative: never.
	spliceAfter int64
	// pipeSize is the capacity asked of each pipe.
	pipeSize int
	// blockWait makes the loops block in epoll_wait instead of waiting
	// in Go's poller (for comparison).
	blockWait bool
}

// The engine's tunables, measured on loopback (see epoll_bench_test.go).
const (
	epollBufSize     = 64 << 10
	epollMaxEvents   = 256
	epollSpliceAfter = 256 << 10
	epollSpliceSmall = 16 << 10
	epollPipeSize    = 1 << 20 // as Go's own splice; the pipe-max-size default
	epollPipePool    = 4       // free pipes kept per loop (pipe pages count against a per-user limit)
	epollBufPool     = 64      // free remainder buffers kept per loop
	epollRounds      = 16      // reads per direction before yielding to others
)

// NewEpollEngine returns an engine with the given number of event loops
// (GOMAXPROCS when loops < 1). log may be nil.
func NewEpollEngine(loops int, log *slog.Logger) (*EpollEngine, error) {
	if loops < 1 {
		loops = runtime.GOMAXPROCS(0)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &EpollEngine{
		log:         log,
		sweepEvery:  time.Second,
		spliceAfter: epollSpliceAfter,
		pipeSize:    epollPipeSize,
	}
	for i := range loops {
		l, err := newLoop(e, i)
		if err != nil {
			for _, l := range e.loops {
				l.closeFds()
			}
			return nil, err
		}
		e.loops = append(e.loops, l)
	}
	return e, nil
}

// Proxy takes ownership of both connections: it moves their descriptors
// to one of the event loops (round robin) and returns at once. The Go
// connections are closed, so Go's poller no longer watches them. done is
// called exactly once, from the loop, when both directions have ended,
// on an error or reset (which is passed on to the other side as a reset),
// after idle without traffic (idle < 1 disables the timeout), or when Run
// ends. done must not block: it runs on the event loop.
func (e *EpollEngine) Proxy(client, server *net.TCPConn, idle time.Duration, done func(Traffic)) {
	cfd, cerr := detach(client)
	sfd, serr := detach(server)
	if err := errors.Join(cerr, serr); err != nil {
		for _, fd := range []int{cfd, sfd} {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
		e.log.Warn("epoll: cannot take over connection", "err", err)
		done(Traffic{})
		return
	}
	e.ProxyFD(cfd, sfd, idle, done)
}

// ProxyFD is Proxy for bare descriptors of connected stream sockets, for
// an accept path that does without Go's net package (and its poller
// registrations, the descriptor duplicates and their closes: a third of
// the engine's work on short connections). The engine owns both
// descriptors from the call on.
func (e *EpollEngine) ProxyFD(client, server int, idle time.Duration, done func(Traffic)) {
	c := &econn{done: done}
	c.sk[0].fd, c.sk[1].fd = client, server
	if idle > 0 {
		c.idle = uint32(min((idle+e.sweepEvery-1)/e.sweepEvery, 1<<31))
	}
	l := e.loops[int(e.next.Add(1))%len(e.loops)]
	l.submit(c)
}

// detach duplicates the connection's descriptor (close-on-exec) and
// closes the Go connection. Go's sockets are nonblocking, and the loops
// never rely on it: reads and writes pass MSG_DONTWAIT, and a direction
// makes sure of O_NONBLOCK before it first splices.
func detach(tc *net.TCPConn) (int, error) {
	if tc == nil {
		return -1, errors.New("nil connection")
	}
	defer tc.Close()
	rc, err := tc.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd, derr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	return nfd, nil
}

// Run runs the event loops until ctx ends, then closes every connection,
// calls its done, and returns. Run may be called once.
func (e *EpollEngine) Run(ctx context.Context) {
	if !e.ran.CompareAndSwap(false, true) {
		e.log.Error("epoll: Run called twice")
		return
	}
	var wg sync.WaitGroup
	for _, l := range e.loops {
		wg.Go(l.run)
	}
	<-ctx.Done()
	for _, l := range e.loops {
		l.mu.Lock()
		l.stop.Store(true)
		l.wake()
		l.mu.Unlock()
	}
	wg.Wait()
}

// Stats sums the loops' counters.
func (e *EpollEngine) Stats() EpollStats {
	s := EpollStats{Loops: len(e.loops)}
	for _, l := range e.loops {
		s.Conns += int(l.nconns.Load())
		s.Splices += l.splices.Load()
		s.Copies += l.copies.Load()
		s.SpliceBytes += l.spliceBytes.Load()
		s.CopyBytes += l.copyBytes.Load()
		s.Timeouts += l.timeouts.Load()
		s.Stalls += l.stalls.Load()
	}
	return s
}
