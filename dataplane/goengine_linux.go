package dataplane

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readiness waits for a socket to become readable without reading from
// it, through the runtime's poller (so deadlines apply), and reports how
// many bytes are queued: FIONREAD, and a one-byte MSG_PEEK to tell EOF
// (0) from "nothing yet".
type readiness struct {
	rc    syscall.RawConn
	poll  func(fd uintptr) bool // bound once: no closure per wait
	avail int
	err   error
}

func (r *readiness) init(c *net.TCPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		r.err = err
		return
	}
	r.rc = rc
	r.poll = r.check
}

// readable blocks until data or EOF is queued and returns the count of
// queued bytes, 0 at EOF.
func (r *readiness) readable() (int, error) {
	if r.rc == nil {
		return 0, r.err
	}
	if err := r.rc.Read(r.poll); err != nil {
		return 0, err
	}
	return r.avail, r.err
}

// check is called by the poller with the socket; false means "wait".
func (r *readiness) check(fd uintptr) bool {
	n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	if err != nil {
		r.avail, r.err = 0, err
		return true
	}
	if n > 0 {
		r.avail, r.err = n, nil
		return true
	}
	var b [1]byte
	for {
		m, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			r.avail, r.err = int(m), nil // 0: EOF
			return true
		case unix.EAGAIN:
			return false
		case unix.EINTR:
			continue
		default:
			r.avail, r.err = 0, errno
			return true
		}
	}
}
