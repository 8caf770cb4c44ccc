//go:build linux

package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// uflow is one client address and port and its server. It costs, while
// live, this struct, a map entry, two slice slots and one socket, held
// by a descriptor or parked in an io_uring (uring_linux.go): no goroutine and
// no buffer.
type uflow struct {
	client  netip.AddrPort
	local   netip.Addr // the address the client last sent to
	srv     *Server
	last    int64 // loop clock of the last datagram either way
	ifindex uint32
	fd      int32   // the socket connected to srv, or -1 when parked
	slot    int32   // the parked socket's slot (uloop.parked), or -1
	idx     int32   // position in uloop.list
	rt      *uretry // timed requests (udp_retry_linux.go); nil until one
}

// uloop is one event loop: a VIP socket, an epoll set holding it and
// every flow's upstream socket, and the flows themselves. Everything but
// the counters and stop is owned by the loop's goroutine, so the flow
// table takes no lock.
type uloop struct {
	c       *UDPCluster
	id      int
	lfd     int // the VIP socket
	v6      bool
	epfd    int
	evfd    int      // written to stop the loop
	epf     *os.File // epfd in Go's poller (nil: block in epoll_wait)
	events  []unix.EpollEvent
	flows   map[netip.AddrPort]*uflow
	saddrs  map[*Server]unix.Sockaddr // connect(2) addresses, made once
	list    []*uflow                  // every live flow, for the idle sweep
	table   []*uflow                  // by upstream descriptor
	in      *udpBatchMem              // client datagrams read
	out     *udpBatchMem              // answers to send
	nin     int                       // datagrams in in
	ini     int                       // next one to handle
	nout    int                       // answers queued in out
	cur     *uflow                    // the flow being worked on, for recover
	now     int64                     // loop clock at the last wake-up
	stop    bool                      // set by the loop when evfd fires
	sweepAt int64

	// Parked flows (uring_linux.go): their sockets live in the rings'
	// fixed-file tables; epoll reports them with Pad = udpParked and Fd =
	// the slot, slot/ringFiles naming the ring.
	rings     []*uring
	ringFiles int
	parked    []*uflow // by slot
	freeSlots []int32
	outBad    [udpBatch]bool // a queued receive that brought nothing (yet)
	npend     int            // receives queued in the rings
	src       int            // next entry of the cluster's sources

	// Timed requests (udp_retry_linux.go): a ring of udpPendRing slots
	// (nil when the cluster times nothing), live from rqHead to rqTail.
	rq             []upend
	rqHead, rqTail uint64

	counters udpCounters
}

// udpParked marks the epoll events of parked sockets.
const udpParked = 1

// The tags of ring requests: a send of client datagram i of the in
// batch, or a receive into answer slot i of the out batch.
const (
	urTagSend = 0
	urTagRecv = 1 << 32
)

// listen opens every loop's socket, epoll set and buffers.
func (c *UDPCluster) listen() (loops []*uloop, bound netip.AddrPort, err error) {
	defer func() {
		if err != nil {
			for _, l := range loops {
				l.close()
			}
			loops = nil
		}
	}()
	if len(c.sources) > 0 {
		if err = c.localSources(); err != nil {
			return nil, bound, err
		}
	}
	addr := c.addr
	for i := range c.opts.Loops {
		l := &uloop{c: c, id: i, lfd: -1, epfd: -1, evfd: -1, v6: udpIs6(addr.Addr()),
			flows: make(map[netip.AddrPort]*uflow), saddrs: make(map[*Server]unix.Sockaddr)}
		loops = append(loops, l)
		if l.lfd, err = listenUDPSocket(addr, c.opts.Loops > 1); err != nil {
			return loops, bound, err
		}
		if i == 0 {
			if bound, err = udpBoundAddr(l.lfd); err != nil {
				return loops, bound, err
			}
			addr = bound // port 0 becomes the port the others share
		}
		if err = l.init(); err != nil {
			return loops, bound, err
		}
		if c.timed {
			l.rq = make([]upend, c.pendRing)
		}
	}
	return loops, bound, nil
}

// init makes the loop's epoll set, eventfd and batches.
func (l *uloop) init() error {
	var err error
	if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	if l.evfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	for _, fd := range []int{l.lfd, l.evfd} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	if l.in, err = newUDPBatch(); err != nil {
		return err
	}
	if l.out, err = newUDPBatch(); err != nil {
		return err
	}
	l.events = make([]unix.EpollEvent, 128)
	return nil
}

// close releases the loop's descriptors and buffers (not its flows').
func (l *uloop) close() {
	if l.epf != nil {
		l.epf.Close()
	} else if l.epfd >= 0 {
		unix.Close(l.epfd)
	}
	for _, fd := range []int{l.lfd, l.evfd} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	l.epf, l.epfd, l.lfd, l.evfd = nil, -1, -1, -1
	for _, b := range []*udpBatchMem{l.in, l.out} {
		if b != nil {
			b.free()
		}
	}
	l.in, l.out = nil, nil
	for _, r := range l.rings {
		r.close()
	}
	l.rings = nil
}

// serve runs the loops until ctx ends, then ends their flows and closes
// everything.
func (c *UDPCluster) serve(ctx context.Context, loops []*uloop) error {
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Go(l.run)
	}
	<-ctx.Done()
	one := [8]byte{1}
	for _, l := range loops {
		for {
			if _, err := unix.Write(l.evfd, one[:]); err != unix.EINTR {
				break
			}
		}
	}
	wg.Wait()
	for _, l := range loops {
		for len(l.list) > 0 {
			l.closeFlow(l.list[len(l.list)-1])
		}
		l.close()
	}
	return nil
}

// sweepEvery is the idle sweep's period: an eighth of the flow timeout,
// between 10ms and 1s.
func (c *UDPCluster) sweepEvery() time.Duration {
	return min(max(c.opts.FlowIdle/8, 10*time.Millisecond), time.Second)
}

// run is the loop's goroutine. By default it waits in Go's own poller,
// where the epoll descriptor is registered (readable while events are
// pending), so an idle loop holds no thread; it only ever calls
// epoll_wait with a zero timeout. The read deadline wakes it for the
// idle sweep.
func (l *uloop) run() {
	every := int64(l.c.sweepEvery())
	l.now = l.c.clock()
	l.sweepAt = l.now + every
	var rc syscall.RawConn
	if !l.c.blockWait {
		if err := unix.SetNonblock(l.epfd, true); err == nil {
			l.epf = os.NewFile(uintptr(l.epfd), "epoll")
			rc, _ = l.epf.SyscallConn()
		}
	}
	var n int
	var werr error
	poll := func(fd uintptr) bool {
		n, werr = unix.EpollWait(int(fd), l.events, 0)
		return n > 0 || (werr != nil && werr != unix.EINTR)
	}
	var deadline int64 // the wake-up time the read deadline is set to
	for !l.stop {
		wake := l.wakeAt()
		if rc != nil {
			// Set again only when due sooner or passed: with requests
			// timed, the head's deadline moves with every answer.
			if wake < deadline || deadline <= l.now {
				deadline = wake
				l.epf.SetReadDeadline(l.c.epoch.Add(time.Duration(deadline)))
			}
			if err := rc.Read(poll); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				l.c.log.Warn("udp: Go poller refused the epoll descriptor; blocking in epoll_wait", "err", err)
				rc = nil
			}
		} else {
			ms := int((wake-l.c.clock())/int64(time.Millisecond)) + 1
			n, werr = unix.EpollWait(l.epfd, l.events, max(ms, 0))
		}
		if werr != nil && werr != unix.EINTR {
			l.c.log.Error("epoll_wait", "loop", l.id, "err", werr)
			time.Sleep(10 * time.Millisecond)
		}
		l.now = l.c.clock()
		for i := 0; i < n; {
			i = l.dispatch(i, n)
		}
		n, werr = 0, nil
		for l.nout > 0 {
			l.flush()
		}
		if l.rqHead < l.rqTail {
			l.expire()
		}
		if l.now >= l.sweepAt {
			l.sweepAt = l.now + every
			if !l.sweep() { // more to end: go on in a moment
				l.sweepAt = l.now + int64(udpSweepPause)
			}
		}
	}
}

// dispatch handles events i..n-1 and returns n, or the index after the
// event that panicked: the panic is counted and logged, the flow at hand
// ended, and the loop goes on.
func (l *uloop) dispatch(i, n int) (next int) {
	defer func() {
		if r := recover(); r != nil {
			l.c.panics.Add(1)
			l.c.log.Error("udp: panic in event loop", "loop", l.id, "panic", r, "stack", string(debug.Stack()))
			if l.cur != nil && l.flows[l.cur.client] == l.cur {
				l.closeFlow(l.cur)
			}
			l.cur = nil
			next = i + 1
			if i < n && int(l.events[i].Fd) == l.lfd && l.ini < l.nin {
				next = i // finish the batch the panic interrupted
			}
		}
	}()
	for ; i < n; i++ {
		fd := int(l.events[i].Fd)
		if l.events[i].Pad == udpParked {
			if fd < len(l.parked) && l.parked[fd] != nil {
				l.cur = l.parked[fd]
				l.readServer(l.cur)
				l.cur = nil
			}
			continue
		}
		switch {
		case fd == l.lfd:
			l.readClients()
		case fd == l.evfd:
			l.stop = true
		case fd < len(l.table) && l.table[fd] != nil:
			l.cur = l.table[fd]
			if l.cur.fd == int32(fd) {
				l.readServer(l.cur)
			} else {
				l.readLate(l.cur, fd)
			}
			l.cur = nil
		}
	}
	return n
}

// readClients reads one batch from the VIP socket and relays it. A batch
// left unfinished by a panic is finished on the next call.
func (l *uloop) readClients() {
	if l.ini >= l.nin {
		l.in.armRecv(udpBatch)
		n, errno := udpRecvmmsg(l.lfd, l.in.hdrs[:])
		if errno != 0 {
			if errno != unix.EAGAIN && errno != unix.EINTR {
				l.c.drop(&l.counters, udpMalformed, netip.AddrPort{}, errno)
			}
			return
		}
		l.nin, l.ini = n, 0
	}
	for l.ini < l.nin {
		i := l.ini
		l.ini++
		l.fromClient(i)
	}
	l.submitRings() // the sends of parked flows: the batch is reused next
}

// fromClient relays client datagram i of the batch: standby, size and
// address checks, the flow (new, kept, or moved off a server that went
// down), then a send on the flow's socket.
func (l *uloop) fromClient(i int) {
	c, k := l.c, &l.counters
	h := &l.in.hdrs[i]
	if !c.serving.Load() {
		c.drop(k, udpStandby, netip.AddrPort{}, nil)
		return
	}
	client := udpNameAddr(&l.in.names[i], l.v6)
	size := int(h.Len)
	if h.Hdr.Flags&unix.MSG_TRUNC != 0 || size > c.maxDatagram {
		c.drop(k, udpOversize, client, fmt.Errorf("%d bytes", size))
		return
	}
	local, ifindex, ok := udpPktinfo(l.in.ctrl[i][:min(int(h.Hdr.Controllen), udpCtrlSize)], l.v6)
	if !ok || h.Hdr.Flags&unix.MSG_CTRUNC != 0 || client.Port() == 0 || !client.Addr().IsValid() {
		c.drop(k, udpMalformed, client, errors.New("no source port or destination address"))
		return
	}
	p := l.in.slot(i, size)
	if c.testHook != nil {
		c.testHook(p)
	}
	f := l.flows[client]
	if f == nil {
		if !c.allow.permits(client.Addr()) {
			c.drop(k, udpAllow, client, nil)
			return
		}
		if f = l.openFlow(client); f == nil {
			return
		}
	} else if !serverUp(f.srv) && !l.moveFlow(f) {
		return
	}
	f.local, f.ifindex, f.last = local, ifindex, l.now
	if f.slot >= 0 {
		r := l.ring(f.slot)
		if r.full() {
			l.submitRings()
		}
		r.send(int(f.slot)%l.ringFiles, p, urTagSend|uint64(i))
		if c.timed {
			l.timeRequest(f, p)
		}
		return // counted when it completes (sent)
	}
	if errno := udpSend(int(f.fd), p); errno != 0 {
		c.drop(k, udpUpstreamError, client, errno)
		return
	}
	if c.timed {
		l.timeRequest(f, p)
	}
	k.dgramsIn.Add(1)
	k.bytesIn.Add(uint64(size))
}

// readServer reads one answer from f's socket into the next outgoing
// slot; the loop sends the slots in one sendmmsg when the wake-up's
// events are done (or the batch is full).
func (l *uloop) readServer(f *uflow) {
	if l.nout == udpBatch {
		l.flush()
	}
	i := l.nout
	buf := l.out.slot(i, udpSlot)
	if f.slot >= 0 {
		r := l.ring(f.slot)
		if r.full() {
			l.submitRings()
		}
		r.recv(int(f.slot)%l.ringFiles, buf, urTagRecv|uint64(i))
		l.out.flows[i] = f
		l.outBad[i] = true // until it completes with a datagram
		l.nout++
		l.npend++
		return // filled in when it completes (received)
	}
	n, errno := udpRecvTrunc(int(f.fd), buf)
	switch {
	case errno == unix.EAGAIN || errno == unix.EINTR:
		return
	case errno != 0: // an ICMP error, such as port unreachable
		l.c.drop(&l.counters, udpUpstreamError, f.client, fmt.Errorf("server %s: %w", f.srv.Name, errno))
		if f.rt != nil && f.rt.n > 0 {
			l.refused(f)
		}
		return
	case n > udpMaxDatagram:
		l.c.drop(&l.counters, udpOversize, f.client, fmt.Errorf("server %s: %d bytes", f.srv.Name, n))
		return
	}
	l.answer(i, f, n)
	l.nout++
}

// answer fills answer slot i, n bytes from f's server, for the client.
func (l *uloop) answer(i int, f *uflow, n int) {
	f.last = l.now
	l.out.iovs[i].SetLen(n)
	hd := &l.out.hdrs[i].Hdr
	hd.Namelen = udpSetName(&l.out.names[i], f.client, l.v6)
	if f.local == l.c.addr.Addr() && !f.local.IsLinkLocalUnicast() {
		// The VIP socket is bound to this very address, so the answer
		// leaves from it without a control message, which costs the
		// kernel a parse and a slower send (about 9% of the relay's
		// answers per second on loopback).
		hd.SetControllen(0)
	} else {
		hd.SetControllen(udpSetPktinfo(&l.out.ctrl[i], f.local, f.ifindex, l.v6))
	}
	l.out.flows[i] = f
	if f.rt != nil {
		l.answered(f, l.out.slot(i, n))
	}
}

// flush sends the queued answers. A message the kernel refuses is
// counted and skipped; the rest still go.
func (l *uloop) flush() {
	k := &l.counters
	if l.npend > 0 {
		l.submitRings()
		l.compactOut()
	}
	off := 0
	for off < l.nout {
		n, errno := udpSendmmsg(l.lfd, l.out.hdrs[off:l.nout])
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 || n <= 0 {
			l.c.drop(k, udpClientError, l.out.flows[off].client, errno)
			off++
			continue
		}
		for j := off; j < off+n; j++ {
			k.dgramsOut.Add(1)
			k.bytesOut.Add(uint64(l.out.hdrs[j].Len))
		}
		off += n
	}
	clear(l.out.flows[:l.nout])
	l.nout = 0
}
