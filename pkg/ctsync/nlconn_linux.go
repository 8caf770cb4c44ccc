package ctsync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// conn is a NETLINK_NETFILTER socket in one namespace. mdlayher/netlink
// opens it (in the namespace), sends and polls; replies are read raw into
// one reused buffer, because its Receive allocates a page per call and
// stops at the first error message of a pipelined batch.
type conn struct {
	mu  sync.Mutex // one exchange at a time
	nl  *netlink.Conn
	rc  syscall.RawConn
	buf []byte
}

const recvBuf = 256 << 10 // room for many replies or events per read

func dialConn(nsfd, rcvbuf int) (*conn, error) {
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: nsfd})
	if err != nil {
		return nil, err
	}
	_ = nl.SetOption(netlink.ExtendedAcknowledge, true)
	_ = nl.SetOption(netlink.CapAcknowledge, true) // acks without a copy of the request
	rc, err := nl.SyscallConn()
	if err != nil {
		nl.Close()
		return nil, err
	}
	c := &conn{nl: nl, rc: rc, buf: make([]byte, recvBuf)}
	if rcvbuf > 0 {
		if err := c.setRcvBuf(rcvbuf); err != nil {
			nl.Close()
			return nil, fmt.Errorf("socket receive buffer: %w", err)
		}
	}
	return c, nil
}

func (c *conn) close() error { return c.nl.Close() }

// setRcvBuf sizes the receive buffer, past net.core.rmem_max when the
// process may (CAP_NET_ADMIN).
func (c *conn) setRcvBuf(n int) error {
	var serr error
	if err := c.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
		if serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
		}
	}); err != nil {
		return err
	}
	return serr
}

// nlmsg is one received netlink message; data aliases the read buffer
// and is valid until the next read.
type nlmsg struct {
	typ, flags uint16
	seq        uint32
	data       []byte
}

// read waits for the socket to be readable, then reads every message
// queued (one datagram per recvfrom) until none is left or the buffer is
// nearly full, and calls fn for each in order. overflow reports an ENOBUFS
// (the kernel dropped messages for this socket) met after the messages
// already passed to fn; the caller decides what to do with the queue.
func (c *conn) read(fn func(nlmsg)) (overflow bool, err error) {
	var n int
	var rerr error
	perr := c.rc.Read(func(fd uintptr) bool {
		n = 0
		for n < len(c.buf)-(64<<10) {
			k, _, err := unix.Recvfrom(int(fd), c.buf[n:], unix.MSG_DONTWAIT)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				if err != unix.EAGAIN {
					rerr = err
				}
				break
			}
			n += (k + 3) &^ 3
			if n > len(c.buf) {
				n = len(c.buf)
			}
		}
		return n > 0 || rerr != nil // nothing yet: wait for readiness
	})
	if perr != nil {
		return false, perr
	}
	if err := parseMessages(c.buf[:n], fn); err != nil {
		return false, err
	}
	if errors.Is(rerr, unix.ENOBUFS) {
		return true, nil
	}
	return false, rerr
}

// discard drops what is queued on the socket now, at most limit bytes.
func (c *conn) discard(limit int) (msgs int) {
	_ = c.rc.Read(func(fd uintptr) bool {
		for limit > 0 {
			k, _, err := unix.Recvfrom(int(fd), c.buf, unix.MSG_DONTWAIT)
			if err != nil && err != unix.ENOBUFS {
				break
			}
			msgs++
			limit -= k
		}
		return true
	})
	return msgs
}

func parseMessages(b []byte, fn func(nlmsg)) error {
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return fmt.Errorf("netlink message of length %d in %d bytes", l, len(b))
		}
		fn(nlmsg{
			typ:   binary.NativeEndian.Uint16(b[4:]),
			flags: binary.NativeEndian.Uint16(b[6:]),
			seq:   binary.NativeEndian.Uint32(b[8:]),
			data:  b[unix.NLMSG_HDRLEN:l],
		})
		if al := (l + 3) &^ 3; al < len(b) {
			b = b[al:]
		} else {
			b = nil
		}
	}
	return nil
}

// ackErr returns the errno of an NLMSG_ERROR payload, nil for an ack.
func ackErr(data []byte) error {
	if len(data) < 4 {
		return fmt.Errorf("short netlink error message")
	}
	if code := int32(binary.NativeEndian.Uint32(data)); code != 0 {
		return syscall.Errno(-code)
	}
	return nil
}

// exchange sends msgs in one datagram and reads until each has been
// answered with an ack or an error (errs[i] for msgs[i]). entry gets the
// other messages that answer msgs[i] (a GET's entry, a dump's parts; a
// dump ends with NLMSG_DONE instead of an ack).
func (c *conn) exchange(msgs []netlink.Message, entry func(i int, m nlmsg)) (errs []error, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sent, err := c.nl.SendMessages(msgs)
	if err != nil {
		return nil, err
	}
	first := sent[0].Header.Sequence
	errs = make([]error, len(msgs))
	pending := len(msgs)
	for pending > 0 {
		overflow, err := c.read(func(m nlmsg) {
			i := int(m.seq - first)
			if i < 0 || i >= len(sent) || m.seq != sent[i].Header.Sequence {
				return // left over from an exchange that failed
			}
			switch m.typ {
			case unix.NLMSG_ERROR:
				errs[i] = ackErr(m.data)
				pending--
			case unix.NLMSG_DONE:
				if len(m.data) >= 4 {
					errs[i] = ackErr(m.data)
				}
				pending--
			default:
				if entry != nil {
					entry(i, m)
				}
			}
		})
		if overflow {
			return nil, fmt.Errorf("replies lost: %w", unix.ENOBUFS)
		}
		if err != nil {
			return nil, err
		}
	}
	return errs, nil
}

// execute sends one request and waits for its answer.
func (c *conn) execute(m netlink.Message, entry func(nlmsg)) error {
	var fn func(int, nlmsg)
	if entry != nil {
		fn = func(_ int, m nlmsg) { entry(m) }
	}
	errs, err := c.exchange([]netlink.Message{m}, fn)
	if err != nil {
		return err
	}
	return errs[0]
}
