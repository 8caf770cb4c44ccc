//go:build linux

package dataplane

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// econn is one proxied connection: sk[0] is the client socket, sk[1] the
// server's; d[0] moves client → server bytes, d[1] server → client.
type econn struct {
	sk     [2]esock
	d      [2]edir
	done   func(Traffic)
	idx    int    // position in eloop.conns
	last   uint32 // loop tick of the last transfer
	idle   uint32 // timeout in ticks; 0: none
	queued bool   // in eloop.ready
	closed bool

	// A ConnectProxy connection: h replaces done; while connecting,
	// sk[1] is the socket being connected to dst (fd -1 between tries),
	// hdr what to write first, and ctimeout the connect timeout in ticks.
	connecting bool
	ctimeout   uint32
	cgen       int32 // tag of the connecting socket's epoll registration
	h          ConnectHandler
	dst        netip.AddrPort
	hdr        []byte
	// srvReset: reading or writing the server's socket met a reset.
	srvReset bool
}

// sockErr notes err, met on socket s of c, and returns it: a reset of
// the server's socket is passive health's business (Traffic.ServerReset).
func (c *econn) sockErr(s *esock, err error) error {
	if s == &c.sk[1] && (err == unix.ECONNRESET || err == unix.EPIPE) {
		c.srvReset = true
	}
	return err
}

// callDone is done or h.Done, whichever the connection has.
func (c *econn) callDone(t Traffic) {
	if h := c.h; h != nil {
		c.h = nil
		h.Done(t)
		return
	}
	if done := c.done; done != nil {
		c.done = nil
		done(t)
	}
}

// esock is the readiness of one socket as edge-triggered epoll told it.
type esock struct {
	fd       int
	readable bool // data or EOF may be waiting
	writable bool // there may be room in the send buffer
	rdhup    bool // the peer has shut down (its FIN is in)
	err      bool // epoll reported an error: read to it, infer nothing
}

// edir is one direction: bytes read from sk[i] and written to sk[1-i].
// Bytes the destination could not take wait in buf[off:end] (a pooled
// buffer, held only while not empty) or in pipe (inPipe bytes).
type edir struct {
	buf      []byte
	off, end int
	pipe     epipe
	inPipe   int
	n        uint64 // bytes delivered to the destination
	eof      bool   // the source reached EOF
	shut     bool   // the destination is shut down for writing: done
	splicing bool   // moving through the pipe
	bulk     bool   // moving enough to splice: see spliceAfter
}

// epipe is a pipe for splice; r == 0 means none (fd 0 is never ours).
type epipe struct{ r, w int }

func (p epipe) close() {
	rawClose(p.r)
	rawClose(p.w)
}

// pump moves what it can both ways and finishes the connection when both
// directions are done or one fails.
func (l *eloop) pump(c *econn) {
	if err := l.flow(c, 0); err != nil {
		l.finish(c, true)
		return
	}
	if err := l.flow(c, 1); err != nil {
		l.finish(c, true)
		return
	}
	if c.d[0].shut && c.d[1].shut {
		l.finish(c, false)
	}
}

// flow moves bytes from sk[i] to sk[1-i] until the source is drained, the
// destination is full, or the direction has used its budget (then the
// connection goes on the ready list, since no new edge will come).
func (l *eloop) flow(c *econn, i int) error {
	src, dst, d := &c.sk[i], &c.sk[1-i], &c.d[i]
	for round := 0; ; round++ {
		if d.end > d.off || d.inPipe > 0 {
			if !dst.writable {
				return nil
			}
			if err := l.flush(c, d, dst); err != nil {
				return err
			}
			if d.end > d.off || d.inPipe > 0 {
				return nil
			}
		}
		if d.shut {
			return nil
		}
		if d.eof {
			d.shut = true
			if c.d[1-i].shut {
				// The last direction: close (in pump) sends the FIN.
				return nil
			}
			if err := rawShutdown(dst.fd); err != nil && err != unix.ENOTCONN {
				return err
			}
			return nil
		}
		if !src.readable {
			return nil
		}
		if round == epollRounds {
			if !c.queued {
				c.queued = true
				l.ready = append(l.ready, c)
			}
			return nil
		}
		if !d.splicing && (d.bulk || l.e.spliceAfter == 0) {
			if err := nonblock(src.fd, dst.fd); err != nil {
				return err
			}
			d.splicing = true
		}
		if d.splicing {
			if err := l.spliceIn(c, src, d); err != nil {
				return err
			}
			continue
		}
		if err := l.readIn(c, src, dst, d); err != nil {
			return err
		}
	}
}

// readIn reads once into the loop's buffer and writes straight on; what
// the destination does not take is kept in a pooled buffer.
func (l *eloop) readIn(c *econn, src, dst *esock, d *edir) error {
	n, err := rawRead(src.fd, l.buf)
	switch {
	case err == unix.EAGAIN:
		src.readable = false
		return nil
	case err == unix.EINTR:
		return nil
	case err != nil:
		return c.sockErr(src, err)
	case n == 0:
		d.eof = true
		return nil
	}
	// A short read emptied the receive queue: the next byte brings a new
	// edge. If the peer's FIN was in before the read, nothing can follow
	// the data: that is the EOF, without a read to see it.
	if n < len(l.buf) {
		if src.rdhup && !src.err {
			d.eof = true
		}
		src.readable = false
	} else if after := l.e.spliceAfter; after > 0 && d.n >= uint64(after) {
		d.bulk = true // a full buffer, on a direction that has moved a lot
	}
	c.last = l.tick
	w := 0
	if dst.writable {
		w, err = send(dst.fd, l.buf[:n])
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			return c.sockErr(dst, err)
		}
		if w > 0 {
			d.n += uint64(w)
			l.copies.Add(1)
			l.copyBytes.Add(uint64(w))
		}
	}
	if w < n {
		l.stalls.Add(1)
		dst.writable = false
		d.buf = l.getBuf()
		d.off, d.end = 0, copy(d.buf, l.buf[w:n])
	}
	return nil
}

// flush writes the direction's pending bytes (buffer or pipe) to dst.
func (l *eloop) flush(c *econn, d *edir, dst *esock) error {
	for d.end > d.off {
		w, err := send(dst.fd, d.buf[d.off:d.end])
		switch {
		case err == unix.EAGAIN:
			l.stalls.Add(1)
			dst.writable = false
			return nil
		case err == unix.EINTR:
			continue
		case err != nil:
			return c.sockErr(dst, err)
		}
		d.off += w
		d.n += uint64(w)
		c.last = l.tick
		l.copies.Add(1)
		l.copyBytes.Add(uint64(w))
		if d.end > d.off {
			// A nonblocking TCP send is short only when the send
			// buffer is full: wait for EPOLLOUT.
			l.stalls.Add(1)
			dst.writable = false
			return nil
		}
		l.putBuf(d.buf)
		d.buf, d.off, d.end = nil, 0, 0
	}
	for d.inPipe > 0 {
		w, err := splice(d.pipe.r, dst.fd, d.inPipe)
		switch {
		case err == unix.EAGAIN:
			l.stalls.Add(1)
			dst.writable = false
			return nil
		case err == unix.EINTR:
			continue
		case err != nil:
			return c.sockErr(dst, err)
		}
		d.inPipe -= w
		d.n += uint64(w)
		c.last = l.tick
		l.splices.Add(1)
		l.spliceBytes.Add(uint64(w))
		if d.inPipe == 0 {
			l.putPipe(d.pipe)
			d.pipe = epipe{}
		}
	}
	return nil
}

// spliceIn splices from src into the direction's pipe; flow then splices
// the pipe out to the destination.
func (l *eloop) spliceIn(c *econn, src *esock, d *edir) error {
	if d.pipe.r == 0 {
		p, err := l.getPipe()
		if err != nil {
			return err
		}
		d.pipe = p
	}
	n, err := splice(src.fd, d.pipe.w, l.e.pipeSize)
	switch {
	case err == unix.EAGAIN:
		// A short splice does not prove the socket drained (the pipe
		// may have run out of slots), so only EAGAIN clears readable.
		src.readable = false
	case err == unix.EINTR:
	case err != nil:
		return c.sockErr(src, err)
	case n == 0:
		d.eof = true
	default:
		d.inPipe = n
		c.last = l.tick
		if n < epollSpliceSmall && l.e.spliceAfter > 0 {
			d.bulk, d.splicing = false, false // small again: copy
		}
		return nil
	}
	l.putPipe(d.pipe)
	d.pipe = epipe{}
	return nil
}

// nonblock sets O_NONBLOCK on descriptors that lack it: the socket end
// of a splice waits unless the file is nonblocking.
func nonblock(fds ...int) error {
	for _, fd := range fds {
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err == nil && fl&unix.O_NONBLOCK == 0 {
			_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl|unix.O_NONBLOCK)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// finish closes both sockets (with a reset when reset is set, so a peer's
// reset or an error is passed on), returns the buffers and calls done.
func (l *eloop) finish(c *econn, reset bool) {
	if c.closed {
		return
	}
	c.closed = true
	for i := range c.sk {
		d := &c.d[i]
		if fd := c.sk[i].fd; fd >= 0 {
			if fd < len(l.table) && l.table[fd] == c {
				l.table[fd] = nil
			}
			if reset {
				unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			}
			rawClose(fd)
		}
		if d.buf != nil {
			l.putBuf(d.buf)
			d.buf = nil
		}
		if d.pipe.r != 0 {
			d.pipe.close() // may hold bytes: never reuse
			d.pipe = epipe{}
		}
	}
	last := len(l.conns) - 1
	if c.idx <= last && l.conns[c.idx] == c {
		l.conns[c.idx] = l.conns[last]
		l.conns[c.idx].idx = c.idx
		l.conns[last] = nil
		l.conns = l.conns[:last]
	}
	l.nconns.Add(-1)
	c.hdr = nil
	l.callDone(c, Traffic{In: c.d[0].n, Out: c.d[1].n, ServerReset: c.srvReset && c.d[1].n == 0})
}

// callDone calls c's done; a panic in it is logged and goes no further.
func (l *eloop) callDone(c *econn, t Traffic) {
	defer func() {
		if r := recover(); r != nil {
			l.e.log.Error("epoll: panic in done", "loop", l.id, "panic", r)
		}
	}()
	c.callDone(t)
}

func (l *eloop) getBuf() []byte {
	if n := len(l.bufs); n > 0 {
		b := l.bufs[n-1]
		l.bufs = l.bufs[:n-1]
		return b
	}
	return make([]byte, epollBufSize)
}

func (l *eloop) putBuf(b []byte) {
	if len(l.bufs) < epollBufPool {
		l.bufs = append(l.bufs, b)
	}
}

func (l *eloop) getPipe() (epipe, error) {
	if n := len(l.pipes); n > 0 {
		p := l.pipes[n-1]
		l.pipes = l.pipes[:n-1]
		return p, nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return epipe{}, err
	}
	// A bigger pipe moves more per splice; the default (64 KiB) if refused.
	unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, l.e.pipeSize)
	return epipe{r: fds[0], w: fds[1]}, nil
}

// putPipe keeps an empty pipe for reuse.
func (l *eloop) putPipe(p epipe) {
	if len(l.pipes) < epollPipePool {
		l.pipes = append(l.pipes, p)
		return
	}
	p.close()
}
