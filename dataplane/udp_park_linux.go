//go:build linux

package dataplane

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Parked flows: a flow's socket lives in one of the loop's rings once the
// cluster's descriptor share is used up (see uring_linux.go), so a node
// holds more live flows than its open-file limit. Its datagrams are
// queued on the ring while the loop handles a wake-up and go in one
// io_uring_enter: the sends when the client batch is done, the receives
// before the answers are sent.

// shouldPark reports whether the next flow parks its socket.
func (l *uloop) shouldPark() bool {
	c := l.c
	return c.park && c.fdFlows.Load() >= c.fdShare
}

// ring is the ring holding slot.
func (l *uloop) ring(slot int32) *uring { return l.rings[int(slot)/l.ringFiles] }

// park moves fd, connected for f, into a free slot of a ring (opening a
// ring when all are full), with epoll watching it under that slot, and
// closes the descriptor. On error fd is closed.
func (l *uloop) park(f *uflow, fd int) error {
	if len(l.freeSlots) == 0 {
		if l.ringFiles == 0 {
			l.ringFiles = uringFiles()
		}
		r, err := newURing(l.ringFiles)
		if err != nil {
			unix.Close(fd)
			return err
		}
		base := len(l.rings) * l.ringFiles
		l.rings = append(l.rings, r)
		l.parked = append(l.parked, make([]*uflow, l.ringFiles)...)
		for s := base + l.ringFiles - 1; s >= base; s-- {
			l.freeSlots = append(l.freeSlots, int32(s))
		}
	}
	slot := l.freeSlots[len(l.freeSlots)-1]
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: slot, Pad: udpParked}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	if err := l.ring(slot).update(int(slot)%l.ringFiles, fd); err != nil {
		unix.Close(fd) // the last reference: leaves the epoll set too
		return err
	}
	unix.Close(fd) // the ring holds the socket now
	l.freeSlots = l.freeSlots[:len(l.freeSlots)-1]
	l.parked[slot] = f
	f.slot, f.fd = slot, -1
	l.c.parked.Add(1)
	l.counters.parkedTotal.Add(1)
	return nil
}

// unpark closes f's parked socket: emptying its slot drops the last
// reference, which also takes it out of the epoll set. Requests still
// queued go first, so none can reach the slot's next socket.
func (l *uloop) unpark(f *uflow) {
	slot := f.slot
	if l.ring(slot).pending() > 0 {
		l.submitRings()
	}
	if err := l.ring(slot).update(int(slot)%l.ringFiles, -1); err != nil {
		l.c.log.Error("udp: cannot close a parked socket", "slot", slot, "err", err)
	}
	l.parked[slot] = nil
	l.freeSlots = append(l.freeSlots, slot)
	f.slot = -1
	l.c.parked.Add(-1)
}

// submitRings submits every ring's queued requests and handles their
// results.
func (l *uloop) submitRings() {
	for _, r := range l.rings {
		if r.pending() == 0 {
			continue
		}
		if err := r.submit(l.completed); err != nil {
			l.c.log.Error("udp: io_uring submit failed", "loop", l.id, "err", err)
		}
	}
}

// completed handles the result of one ring request.
func (l *uloop) completed(tag uint64, res int32) {
	c, k := l.c, &l.counters
	i := int(tag & (urTagRecv - 1))
	if tag == urTagResend { // a request re-sent to another server
		if res < 0 {
			c.drop(k, udpUpstreamError, netip.AddrPort{}, unix.Errno(-res))
		}
		return
	}
	if tag&urTagRecv == 0 { // a client datagram sent to its server
		if res < 0 {
			c.drop(k, udpUpstreamError, udpNameAddr(&l.in.names[i], l.v6), unix.Errno(-res))
			return
		}
		k.dgramsIn.Add(1)
		k.bytesIn.Add(uint64(res))
		return
	}
	f := l.out.flows[i]
	switch {
	case res == -int32(unix.EAGAIN) || res == -int32(unix.EINTR):
	case res < 0: // an ICMP error, such as port unreachable
		c.drop(k, udpUpstreamError, f.client, fmt.Errorf("server %s: %w", f.srv.Name, unix.Errno(-res)))
	case res > udpMaxDatagram:
		c.drop(k, udpOversize, f.client, fmt.Errorf("server %s: %d bytes", f.srv.Name, res))
	default:
		l.outBad[i] = false
		l.answer(i, f, int(res))
	}
}

// compactOut closes the gaps that receives which brought nothing (or
// never completed) left in the answer batch, moving later answers down.
func (l *uloop) compactOut() {
	l.npend = 0
	w := 0
	for i := 0; i < l.nout; i++ {
		if l.outBad[i] {
			l.outBad[i] = false
			l.out.flows[i] = nil
			continue
		}
		if w != i {
			n := int(l.out.iovs[i].Len)
			copy(l.out.slot(w, n), l.out.slot(i, n))
			l.answer(w, l.out.flows[i], n)
			l.out.flows[i] = nil
		}
		w++
	}
	l.nout = w
}
