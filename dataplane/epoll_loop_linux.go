//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// eloop is one event loop. Everything but the hand-over queue and the
// counters is owned by the loop's goroutine.
type eloop struct {
	e          *EpollEngine
	id         int
	epfd, evfd int
	events     []unix.EpollEvent
	buf        []byte
	table      []*econn // by descriptor
	conns      []*econn // every registered connection; econn.idx
	ready      []*econn // connections with work left after their budget
	running    []*econn // the ready list being worked through; ri next
	ri         int
	epf        *os.File // epfd in Go's poller
	pipes      []epipe  // free, empty pipes
	bufs       [][]byte // free remainder buffers
	tick       uint32   // sweeps so far
	cur        *econn   // the connection being worked on, for recover
	evi        int      // next event to dispatch
	wakeup     bool     // the eventfd fired in this batch
	cgen       int32    // last connecting-socket tag (ConnectProxy)

	mu     sync.Mutex // guards queue, closed and writes to evfd
	queue  []*econn
	closed bool
	woken  atomic.Bool // a wake-up is pending on evfd
	stop   atomic.Bool

	nconns                                   atomic.Int64
	splices, copies                          atomic.Uint64
	spliceBytes, copyBytes, timeouts, stalls atomic.Uint64
	_                                        [64]byte
}

func newLoop(e *EpollEngine, id int) (*eloop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
	}
	return &eloop{e: e, id: id, epfd: epfd, evfd: evfd}, nil
}

func (l *eloop) closeFds() {
	if l.epf != nil {
		l.epf.Close()
	} else {
		unix.Close(l.epfd)
	}
	unix.Close(l.evfd)
}

// submit hands a connection to the loop, or closes it if the loop is gone.
func (l *eloop) submit(c *econn) {
	l.nconns.Add(1)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		for _, s := range c.sk {
			if s.fd >= 0 {
				unix.Close(s.fd)
			}
		}
		l.nconns.Add(-1)
		c.callDone(Traffic{})
		return
	}
	l.queue = append(l.queue, c)
	if l.woken.CompareAndSwap(false, true) {
		l.wake()
	}
	l.mu.Unlock()
}

// wake writes to the eventfd; l.mu must be held (the loop closes it).
func (l *eloop) wake() {
	one := [8]byte{1}
	for {
		_, err := unix.Write(l.evfd, one[:])
		if err != unix.EINTR {
			return
		}
	}
}

// run is the loop's goroutine. It waits for events in Go's own poller,
// where the epoll descriptor is registered (it is readable while events
// are pending), so an idle loop holds neither a thread nor a P, and only
// ever calls epoll_wait with a zero timeout. The read deadline wakes it
// for the idle sweep.
func (l *eloop) run() {
	l.events = make([]unix.EpollEvent, epollMaxEvents)
	l.buf = make([]byte, epollBufSize)
	every := l.e.sweepEvery
	next := time.Now().Add(every)
	var rc syscall.RawConn
	if l.e.blockWait {
	} else if err := unix.SetNonblock(l.epfd, true); err == nil {
		l.epf = os.NewFile(uintptr(l.epfd), "epoll")
		rc, _ = l.epf.SyscallConn()
		l.epf.SetReadDeadline(next)
	}
	var n int
	var werr error
	poll := func(fd uintptr) bool {
		n, werr = epollPoll(int(fd), l.events)
		return n > 0 || len(l.ready) > 0 || (werr != nil && werr != unix.EINTR)
	}
	for {
		if rc != nil {
			if err := rc.Read(poll); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				l.e.log.Warn("epoll: Go poller refused the epoll descriptor; blocking in epoll_wait", "err", err)
				rc = nil
			}
		} else {
			timeout := int(time.Until(next)/time.Millisecond) + 1
			if len(l.ready) > 0 {
				timeout = 0
			}
			n, werr = unix.EpollWait(l.epfd, l.events, timeout)
		}
		if werr != nil {
			if werr != unix.EINTR {
				l.e.log.Error("epoll_wait", "loop", l.id, "err", werr)
				time.Sleep(10 * time.Millisecond)
			}
			n, werr = 0, nil
		}
		for l.evi = 0; l.evi < n; {
			l.dispatch(n)
		}
		n = 0
		if len(l.ready) > 0 {
			l.running, l.ready = l.ready, l.running[:0]
			for l.ri = 0; l.ri < len(l.running); {
				l.runReady()
			}
			clear(l.running)
		}
		if l.wakeup {
			l.wakeup = false
			var b [8]byte
			unix.Read(l.evfd, b[:])
			l.woken.Store(false)
			if l.stop.Load() {
				l.shutdown()
				return
			}
			l.admit()
		}
		if now := time.Now(); !now.Before(next) {
			l.tick++
			next = now.Add(every)
			if l.epf != nil {
				l.epf.SetReadDeadline(next)
			}
			l.sweep()
		}
	}
}

// recoverConn is deferred by every loop step that works on connections:
// a panic closes the connection at hand (with a reset) and the loop goes on.
func (l *eloop) recoverConn() {
	r := recover()
	if r == nil {
		return
	}
	c := l.cur
	l.cur = nil
	l.e.log.Error("epoll: panic in event loop", "loop", l.id, "panic", r)
	if c != nil {
		l.finish(c, true)
	}
}

// dispatch handles events l.evi..n-1; it returns early on a panic.
func (l *eloop) dispatch(n int) {
	defer l.recoverConn()
	for l.evi < n {
		ev := &l.events[l.evi]
		l.evi++
		fd := int(ev.Fd)
		if fd == l.evfd {
			l.wakeup = true
			continue
		}
		if fd >= len(l.table) || l.table[fd] == nil {
			continue
		}
		c := l.table[fd]
		s := &c.sk[0]
		if c.sk[1].fd == fd {
			s = &c.sk[1]
		}
		m := ev.Events
		if c.connecting && s == &c.sk[1] && ev.Pad != c.cgen {
			continue // an event of a closed socket
		}
		if m&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			s.readable = true
			if m&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
				s.rdhup = true
			}
			if m&unix.EPOLLERR != 0 {
				s.err = true
			}
		}
		if m&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			s.writable = true
		}
		if c.connecting {
			// The client's readiness is kept for when connected.
			if s == &c.sk[1] {
				l.cur = c
				l.connectEvent(c, m)
				l.cur = nil
			}
			continue
		}
		l.cur = c
		l.pump(c)
		l.cur = nil
	}
}

// runReady gives another budget to the connections of l.running that
// used theirs up; it returns early on a panic.
func (l *eloop) runReady() {
	defer l.recoverConn()
	for l.ri < len(l.running) {
		c := l.running[l.ri]
		l.ri++
		c.queued = false
		if !c.closed {
			l.cur = c
			l.pump(c)
			l.cur = nil
		}
	}
}

// admit registers the connections handed over by Proxy.
func (l *eloop) admit() {
	l.mu.Lock()
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	for i, c := range q {
		q[i] = nil
		l.add(c)
	}
}

func (l *eloop) add(c *econn) {
	defer l.recoverConn()
	l.cur = c
	c.last = l.tick
	c.idx = len(l.conns)
	l.conns = append(l.conns, c)
	if c.connecting {
		l.addConnecting(c)
		l.cur = nil
		return
	}
	for i := range c.sk {
		fd := c.sk[i].fd
		if fd >= len(l.table) {
			t := make([]*econn, max(2*len(l.table), fd+1, 1024))
			copy(t, l.table)
			l.table = t
		}
		l.table[fd] = c
	}
	for i := range c.sk {
		fd := c.sk[i].fd
		ev := unix.EpollEvent{
			Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET,
			Fd:     int32(fd),
		}
		if err := rawEpollAdd(l.epfd, fd, &ev); err != nil {
			l.e.log.Warn("epoll_ctl add", "loop", l.id, "err", err)
			l.finish(c, true)
			break
		}
	}
	l.cur = nil
}

// sweep closes the connections idle for longer than their timeout.
func (l *eloop) sweep() {
	defer l.recoverConn()
	for i := 0; i < len(l.conns); {
		c := l.conns[i]
		if c.connecting {
			if l.tick-c.last > c.ctimeout {
				l.cur = c
				l.connectFailed(c, fmt.Errorf("dial tcp %s: %w", c.dst, unix.ETIMEDOUT))
				l.cur = nil
				if c.closed {
					continue // finish moved the last connection to i
				}
			}
			i++
			continue
		}
		if c.idle > 0 && l.tick-c.last > c.idle {
			l.timeouts.Add(1)
			l.finish(c, false) // moves the last connection to i
			continue
		}
		i++
	}
}

// shutdown closes every connection and the loop's descriptors.
func (l *eloop) shutdown() {
	l.mu.Lock()
	l.closed = true
	q := l.queue
	l.queue = nil
	l.closeFds()
	l.mu.Unlock()
	for _, c := range q {
		c.idx = len(l.conns)
		l.conns = append(l.conns, c)
	}
	for len(l.conns) > 0 {
		l.finish(l.conns[len(l.conns)-1], false)
	}
	for _, p := range l.pipes {
		p.close()
	}
	l.pipes, l.bufs, l.table, l.buf = nil, nil, nil, nil
}
