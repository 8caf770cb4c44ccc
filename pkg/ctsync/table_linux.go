package ctsync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// Table is the kernel's conntrack table in one network namespace.
//
// It holds two netlink sockets there: one for requests (Write, Delete)
// and one for dumps, read as a stream so a dump of 100,000 entries never
// sits in memory whole. Events opens its own socket per call. All methods
// are safe for concurrent use.
type Table struct {
	log  *slog.Logger
	nsfd int // owned; every socket is opened in this namespace; 0: the caller's (Open)

	// EventOptions tune Events; set them before calling Events.
	EventOptions EventOptions

	req *netlink.Conn

	dumpMu sync.Mutex
	dump   *netlink.Conn // nil after a failed read: reopened on next use
	buf    []byte

	stats counters
}

// Open opens the conntrack table of the calling goroutine's network
// namespace.
//
// Its sockets are opened where the caller is, without entering a
// namespace: setns, even into one's own namespace, needs CAP_SYS_ADMIN,
// which the daemon does not have (it runs with NET_ADMIN and NET_RAW).
func Open(log *slog.Logger) (*Table, error) {
	return open(0, log)
}

// OpenNetns opens the conntrack table of the network namespace fd refers
// to (an open /proc/PID/ns/net or /run/netns/NAME). The Table keeps its
// own duplicate: the caller may close fd.
func OpenNetns(fd int, log *slog.Logger) (*Table, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup netns fd: %w", err)
	}
	return open(dup, log)
}

func open(nsfd int, log *slog.Logger) (*Table, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Table{log: log, nsfd: nsfd, buf: make([]byte, 64<<10)}
	var err error
	if t.req, err = t.dial(); err != nil {
		if nsfd > 0 {
			unix.Close(nsfd)
		}
		return nil, classifyProbe(err, true, nil)
	}
	return t, nil
}

func (t *Table) dial() (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: t.nsfd})
	if err != nil {
		return nil, err
	}
	// Kernel error messages in acks, and no copy of the request in them.
	_ = c.SetOption(netlink.ExtendedAcknowledge, true)
	_ = c.SetOption(netlink.CapAcknowledge, true)
	return c, nil
}

// Close closes the Table's sockets. Events calls end on their own
// context; close them first.
func (t *Table) Close() error {
	err := t.req.Close()
	t.dumpMu.Lock()
	if t.dump != nil {
		t.dump.Close()
		t.dump = nil
	}
	t.dumpMu.Unlock()
	if t.nsfd > 0 {
		unix.Close(t.nsfd)
	}
	return err
}

// Stats returns the Table's counters.
func (t *Table) Stats() Stats { return t.stats.snapshot() }

// Probe checks that the calling goroutine's network namespace has
// ctnetlink, and says which piece is missing when it has not: nfnetlink,
// nf_conntrack or nf_conntrack_netlink (or the privilege to use them).
func Probe() error {
	t, err := Open(nil)
	if err != nil {
		return err
	}
	defer t.Close()
	return t.Probe()
}

// Probe checks the Table's namespace as the package-level Probe does.
func (t *Table) Probe() error {
	loaded := true
	if err := t.inNetns(func() error {
		_, err := os.Stat("/proc/sys/net/netfilter/nf_conntrack_max")
		loaded = err == nil
		return nil
	}); err != nil {
		return err
	}
	m, err := netfilter.EncodeNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: msgCTStats,
		Flags:       netlink.Request | netlink.Acknowledge,
	}, netfilter.NewAttributeEncoder())
	if err != nil {
		return err
	}
	_, qerr := t.req.Execute(m)
	return classifyProbe(nil, loaded, qerr)
}

// EventsMode returns net.netfilter.nf_conntrack_events of the Table's
// namespace: 0 no events, 1 events for every entry, 2 (the default since
// Linux 6.0) events only for entries created while some ctnetlink event
// listener existed (see the package documentation).
func (t *Table) EventsMode() (int, error) {
	var mode int
	err := t.inNetns(func() error {
		b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_events")
		if err != nil {
			return err
		}
		mode, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read nf_conntrack_events: %w", err)
	}
	return mode, nil
}

// inNetns runs fn on a thread switched into the Table's namespace. If the
// thread cannot be switched back it stays locked, so the runtime retires
// it instead of reusing it in the wrong namespace.
func (t *Table) inNetns(fn func() error) error {
	if t.nsfd == 0 { // the caller's own namespace (Open)
		return fn()
	}
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own network namespace: %w", err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(t.nsfd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace: %w", err)
	}
	ferr := fn()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("restore network namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// Write makes the kernel hold f: it creates the entry, NAT binding
// included, or updates the entry with f's original tuple (timeout, mark,
// SEEN_REPLY/ASSURED, TCP state). An existing entry whose NAT binding
// differs from f's (a flow the node picked up on its own) is deleted and
// created again, since the kernel cannot change a binding. Only TCP and
// UDP flows can be written.
func (t *Table) Write(f Flow) error {
	err := t.write(f)
	if err != nil {
		t.stats.writeErrors.Add(1)
		return fmt.Errorf("write conntrack entry %v: %w", f, err)
	}
	return nil
}

func (t *Table) write(f Flow) error {
	if f.Proto != ProtoTCP && f.Proto != ProtoUDP {
		return fmt.Errorf("%w: protocol %d (only tcp and udp)", ErrInvalidFlow, f.Proto)
	}
	err := t.create(f)
	if err == nil {
		t.stats.created.Add(1)
	}
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	cur, err := t.get(f)
	switch {
	case errors.Is(err, unix.ENOENT):
		// EEXIST without an entry under the original tuple: the reply
		// tuple belongs to another entry.
		return ErrConflict
	case err != nil:
		return err
	case cur.Reply != f.Reply:
		if err := t.delete(f); err != nil {
			return err
		}
		if err := t.create(f); err != nil {
			return err
		}
		t.stats.replaced.Add(1)
		return nil
	}
	m, err := newFlowMessage(f, false, true)
	if err != nil {
		return err
	}
	_, err = t.req.Execute(m)
	if errors.Is(err, unix.EBUSY) {
		// The entry has a status bit f lacks (SEEN_REPLY or ASSURED,
		// which cannot be cleared): update the rest.
		if m, err = newFlowMessage(f, false, false); err != nil {
			return err
		}
		_, err = t.req.Execute(m)
	}
	if err != nil {
		return err
	}
	t.stats.updated.Add(1)
	return nil
}

func (t *Table) create(f Flow) error {
	m, err := newFlowMessage(f, true, true)
	if err != nil {
		return err
	}
	if _, err := t.req.Execute(m); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("kernel refused the NAT binding (is nf_nat available?): %w", err)
		}
		return err
	}
	return nil
}

// get returns the entry with f's original tuple and zone.
func (t *Table) get(f Flow) (Flow, error) {
	m, err := keyMessage(f, msgCTGet)
	if err != nil {
		return Flow{}, err
	}
	msgs, err := t.req.Execute(m)
	if err != nil {
		return Flow{}, err
	}
	for _, m := range msgs {
		if m.Header.Type == netlink.Error {
			continue
		}
		_, cur, err := decodeMessage(m)
		return cur, err
	}
	return Flow{}, unix.ENOENT
}

// Delete removes the entry with f's original tuple and zone; an entry
// that is not there is not an error.
func (t *Table) Delete(f Flow) error {
	if err := t.delete(f); err != nil {
		return fmt.Errorf("delete conntrack entry %v: %w", f, err)
	}
	return nil
}

func (t *Table) delete(f Flow) error {
	m, err := keyMessage(f, msgCTDelete)
	if err != nil {
		return err
	}
	if _, err := t.req.Execute(m); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	t.stats.deleted.Add(1)
	return nil
}

// DeleteWhere deletes every entry with that mark for which match returns
// true (e.g. all flows to one server) and returns how many it deleted.
// match runs on a snapshot taken before the first delete.
func (t *Table) DeleteWhere(mark, mask uint32, match func(Flow) bool) (int, error) {
	var doomed []Flow
	if err := t.Dump(mark, mask, func(f Flow) bool {
		if match(f) {
			doomed = append(doomed, f)
		}
		return true
	}); err != nil {
		return 0, err
	}
	n := 0
	for _, f := range doomed {
		if err := t.Delete(f); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Count returns the live flows with that mark per (mark, server): the
// status page's per-server connection counts of a nat cluster.
func (t *Table) Count(mark, mask uint32) (map[CountKey]int, error) {
	out := map[CountKey]int{}
	err := t.Dump(mark, mask, func(f Flow) bool {
		out[CountKey{Mark: f.Mark, Server: f.Server()}]++
		return true
	})
	return out, err
}

// Dump calls fn with every entry whose mark&mask == mark&mask (the kernel
// filters), until fn returns false. Entries that fail to decode are
// skipped and reported in the error returned after the others.
func (t *Table) Dump(mark, mask uint32, fn func(Flow) bool) error {
	t.dumpMu.Lock()
	defer t.dumpMu.Unlock()
	if err := t.dumpLocked(mark, mask, fn); err != nil {
		return fmt.Errorf("dump conntrack table: %w", err)
	}
	return nil
}

func (t *Table) dumpLocked(mark, mask uint32, fn func(Flow) bool) error {
	if t.dump == nil {
		c, err := t.dial()
		if err != nil {
			return err
		}
		t.dump = c
	}
	req, err := dumpMessage(mark, mask)
	if err != nil {
		return err
	}
	sent, err := t.dump.Send(req)
	if err != nil {
		t.resetDump()
		return err
	}
	rc, err := t.dump.SyscallConn()
	if err != nil {
		t.resetDump()
		return err
	}
	var badErr error
	bad, stop := 0, false
	for {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), t.buf, 0)
			return rerr != unix.EAGAIN
		}); err != nil {
			rerr = err
		}
		if rerr != nil {
			t.resetDump()
			return rerr
		}
		msgs, err := syscall.ParseNetlinkMessage(t.buf[:n])
		if err != nil {
			t.resetDump()
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != sent.Header.Sequence {
				continue // left over from an earlier request
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				if bad > 0 {
					return fmt.Errorf("%d entries did not decode, first: %w", bad, badErr)
				}
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
						return syscall.Errno(-code)
					}
				}
				continue
			}
			if stop {
				continue // drain the rest so the socket is clean
			}
			_, f, err := decodeMessage(netlink.Message{
				Header: netlink.Header{Type: netlink.HeaderType(m.Header.Type), Flags: netlink.HeaderFlags(m.Header.Flags)},
				Data:   m.Data,
			})
			if err != nil {
				if bad == 0 {
					badErr = err
				}
				bad++
				continue
			}
			stop = !fn(f)
		}
	}
}

func (t *Table) resetDump() {
	t.dump.Close()
	t.dump = nil
}
