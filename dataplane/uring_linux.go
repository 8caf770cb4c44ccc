//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// uring is the little of io_uring the UDP loops use: a store of parked
// sockets and a batch of sends and receives on them.
//
// A UDP flow holds a socket for its whole life, and a process may hold no
// more descriptors than RLIMIT_NOFILE (20,000 on the lab machines, a hard
// limit). A socket installed in a ring's fixed-file table keeps living
// after its descriptor is closed: the ring holds the reference. The loop
// registers the socket with its epoll set before closing the descriptor,
// and epoll goes on reporting it (the registration lasts as long as the
// file does); the datagrams then move through the ring, which addresses
// the socket by its slot in the table. Each ring's table may hold as many
// sockets as RLIMIT_NOFILE allows, and a loop opens rings as it needs
// them, so the descriptor limit no longer caps the flows.
//
// Every request is a nonblocking send or receive (MSG_DONTWAIT) that the
// kernel completes while io_uring_enter submits it; submit waits for all
// of them, so a buffer is free again once submit returns. No kernel thread
// and no deferred work is involved.
type uring struct {
	fd      int
	files   int // slots in the fixed-file table
	ringMem []byte
	sqeMem  []byte

	sqHead, sqTail, sqMask *uint32
	sqArray                []uint32
	sqes                   []urSQE
	sqEntries              uint32

	cqHead, cqTail, cqMask *uint32
	cqes                   []urCQE

	queued uint32 // SQEs written since the last submit
	tail   uint32 // our copy of the SQ tail
}

// io_uring ABI (include/uapi/linux/io_uring.h).
const (
	urSysSetup    = 425
	urSysEnter    = 426
	urSysRegister = 427

	urOffSQRing = 0
	urOffSQEs   = 0x10000000

	urFeatSingleMmap = 1 << 0

	urSetupClamp = 1 << 4

	urEnterGetEvents = 1 << 0

	urRegisterFiles       = 2
	urRegisterFilesUpdate = 6

	urOpSend = 26
	urOpRecv = 27

	urSQEFixedFile = 1 << 0
)

type urSQOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type urCQOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type urParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  urSQOffsets
	cqOff                                                                  urCQOffsets
}

type urSQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	fileIndex   int32
	addr3       uint64
	pad         uint64
}

type urCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

type urFilesUpdate struct {
	offset uint32
	resv   uint32
	fds    uint64
}

func init() {
	// The ABI sizes the kernel expects.
	if unsafe.Sizeof(urSQE{}) != 64 || unsafe.Sizeof(urCQE{}) != 16 || unsafe.Sizeof(urParams{}) != 120 {
		panic("dataplane: io_uring ABI structs have the wrong size")
	}
}

// urSQSize is each ring's submission queue: room for a whole batch of
// sends or receives, and more.
const urSQSize = 128

// newURing opens a ring whose fixed-file table has files empty slots.
func newURing(files int) (*uring, error) {
	var p urParams
	p.flags = urSetupClamp
	fd, _, errno := unix.Syscall(urSysSetup, urSQSize, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &uring{fd: int(fd), files: files}
	if err := r.init(&p); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *uring) init(p *urParams) error {
	if p.features&urFeatSingleMmap == 0 {
		return errors.New("io_uring: the kernel lacks IORING_FEAT_SINGLE_MMAP (5.4)")
	}
	size := max(uintptr(p.sqOff.array)+uintptr(p.sqEntries)*4, uintptr(p.cqOff.cqes)+uintptr(p.cqEntries)*16)
	var err error
	r.ringMem, err = unix.Mmap(r.fd, urOffSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("io_uring: mmap rings: %w", err)
	}
	r.sqeMem, err = unix.Mmap(r.fd, urOffSQEs, int(p.sqEntries)*64, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("io_uring: mmap SQEs: %w", err)
	}
	at := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&r.ringMem[off])) }
	r.sqHead, r.sqTail, r.sqMask = at(p.sqOff.head), at(p.sqOff.tail), at(p.sqOff.ringMask)
	r.sqArray = unsafe.Slice(at(p.sqOff.array), p.sqEntries)
	r.sqes = unsafe.Slice((*urSQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.sqEntries = p.sqEntries
	r.cqHead, r.cqTail, r.cqMask = at(p.cqOff.head), at(p.cqOff.tail), at(p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*urCQE)(unsafe.Pointer(&r.ringMem[p.cqOff.cqes])), p.cqEntries)
	r.tail = atomic.LoadUint32(r.sqTail)

	empty := make([]int32, r.files)
	for i := range empty {
		empty[i] = -1
	}
	if _, _, errno := unix.Syscall6(urSysRegister, uintptr(r.fd), urRegisterFiles,
		uintptr(unsafe.Pointer(&empty[0])), uintptr(len(empty)), 0, 0); errno != 0 {
		return fmt.Errorf("io_uring: register %d file slots: %w", r.files, errno)
	}
	return nil
}

// close releases the ring and every socket still parked in it.
func (r *uring) close() {
	for _, m := range [][]byte{r.sqeMem, r.ringMem} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	r.sqeMem, r.ringMem = nil, nil
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}

// update points slot at fd (-1 empties it, dropping the ring's reference).
func (r *uring) update(slot, fd int) error {
	fds := [1]int32{int32(fd)}
	u := urFilesUpdate{offset: uint32(slot), fds: uint64(uintptr(unsafe.Pointer(&fds[0])))}
	for {
		n, _, errno := unix.Syscall6(urSysRegister, uintptr(r.fd), urRegisterFilesUpdate,
			uintptr(unsafe.Pointer(&u)), 1, 0, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			return fmt.Errorf("io_uring: update file slot %d: %w", slot, errno)
		case n != 1:
			return fmt.Errorf("io_uring: update file slot %d: %d updated", slot, n)
		}
		return nil
	}
}

// full reports whether the submission queue has no room left.
func (r *uring) full() bool { return r.queued >= r.sqEntries }

// pending is the number of requests queued and not yet submitted.
func (r *uring) pending() int { return int(r.queued) }

// queue fills the next SQE; the caller checks full first.
func (r *uring) queue(op uint8, slot int, p []byte, flags uint32, tag uint64) {
	i := r.tail & *r.sqMask
	r.sqes[i] = urSQE{opcode: op, flags: urSQEFixedFile, fd: int32(slot),
		addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(p)))), len: uint32(len(p)),
		opFlags: flags | unix.MSG_DONTWAIT, userData: tag}
	r.sqArray[i] = i
	r.tail++
	r.queued++
}

// send queues p for the socket in slot; the result comes back with tag.
func (r *uring) send(slot int, p []byte, tag uint64) { r.queue(urOpSend, slot, p, 0, tag) }

// recv queues a read of one datagram into p for the socket in slot. The
// result is the datagram's full length (MSG_TRUNC), more than len(p) if
// it did not fit.
func (r *uring) recv(slot int, p []byte, tag uint64) { r.queue(urOpRecv, slot, p, unix.MSG_TRUNC, tag) }

// submit hands the queued requests to the kernel and waits for all of
// them, then calls done for every completion in order. The buffers of the
// requests are free again when it returns.
func (r *uring) submit(done func(tag uint64, res int32)) error {
	n := r.queued
	if n == 0 {
		return nil
	}
	atomic.StoreUint32(r.sqTail, r.tail)
	var err error
	for submitted := uint32(0); submitted < n; {
		got, _, errno := unix.Syscall6(urSysEnter, uintptr(r.fd), uintptr(n-submitted), uintptr(n-submitted),
			urEnterGetEvents, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			err = fmt.Errorf("io_uring_enter: %w", errno)
			break
		}
		submitted += uint32(got)
	}
	r.queued = 0
	r.reap(done)
	return err
}

// reap calls done for every completion waiting in the ring.
func (r *uring) reap(done func(tag uint64, res int32)) {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	mask := *r.cqMask
	for ; head != tail; head++ {
		c := r.cqes[head&mask]
		done(c.userData, c.res)
	}
	atomic.StoreUint32(r.cqHead, head)
}

// uringFiles is the size of each ring's fixed-file table: RLIMIT_NOFILE
// bounds it, and it should not hold much kernel memory while empty.
func uringFiles() int {
	var rl unix.Rlimit
	n := 16384
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && rl.Cur != unix.RLIM_INFINITY && rl.Cur < uint64(n) {
		n = int(rl.Cur)
	}
	return n
}

// uringWorks reports, once, whether this kernel lets a socket live in a
// ring after its descriptor is closed, with epoll still reporting it and
// sends and receives completing inside io_uring_enter: the parked-flow
// design needs all of it.
var uringWorks = sync.OnceValue(probeURing)

func probeURing() error {
	r, err := newURing(2)
	if err != nil {
		return err
	}
	defer r.close()
	a, b, err := udpPair()
	if err != nil {
		return err
	}
	defer unix.Close(a)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	defer unix.Close(ep)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, b, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: 1, Pad: 7}); err != nil {
		unix.Close(b)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	if err := r.update(1, b); err != nil {
		unix.Close(b)
		return err
	}
	unix.Close(b) // the ring holds it now
	msg := []byte("tandem")
	var res []int32
	collect := func(_ uint64, n int32) { res = append(res, n) }
	r.send(1, msg, 0)
	if err := r.submit(collect); err != nil {
		return err
	}
	if len(res) != 1 || res[0] != int32(len(msg)) {
		return fmt.Errorf("io_uring: parked send: %v", res)
	}
	buf := make([]byte, 64)
	if n, err := unix.Read(a, buf); err != nil || n != len(msg) {
		return fmt.Errorf("io_uring: the parked send did not arrive (%d, %v)", n, err)
	}
	if _, err := unix.Write(a, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	evs := make([]unix.EpollEvent, 2)
	n, err := unix.EpollWait(ep, evs, 1000)
	if err != nil || n != 1 || evs[0].Fd != 1 || evs[0].Pad != 7 {
		return fmt.Errorf("io_uring: epoll does not report a parked socket (%d events, %v)", n, err)
	}
	res = res[:0]
	r.recv(1, buf, 0)
	r.recv(1, buf, 0) // nothing left: must fail at once, not wait
	if err := r.submit(collect); err != nil {
		return err
	}
	if len(res) != 2 || res[0] != int32(len(msg)) || res[1] != -int32(unix.EAGAIN) {
		return fmt.Errorf("io_uring: parked receive: %v", res)
	}
	return r.update(1, -1)
}

// udpPair is two nonblocking UDP sockets on 127.0.0.1 connected to each
// other.
func udpPair() (int, int, error) {
	var fds [2]int
	for i := range fds {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			if i == 1 {
				unix.Close(fds[0])
			}
			return -1, -1, fmt.Errorf("socket: %w", err)
		}
		fds[i] = fd
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			unix.Close(fds[0])
			if i == 1 {
				unix.Close(fd)
			}
			return -1, -1, fmt.Errorf("bind: %w", err)
		}
	}
	for i := range fds {
		sa, err := unix.Getsockname(fds[1-i])
		if err == nil {
			err = unix.Connect(fds[i], sa)
		}
		if err != nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
			return -1, -1, fmt.Errorf("connect: %w", err)
		}
	}
	return fds[0], fds[1], nil
}

// UDPParking reports whether UDP flows can park their sockets in io_uring
// (nil) or why not. Without it a node holds no more live UDP flows than
// its descriptor share.
func UDPParking() error { return uringWorks() }
