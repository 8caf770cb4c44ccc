package ctsync

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"

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

	req  *conn // single requests: Write, Delete
	bulk *conn // dumps and batched writes

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
	t := &Table{log: log, nsfd: nsfd}
	var err error
	if t.req, err = dialConn(nsfd, 0); err == nil {
		// Acks of a batch of creates queue up while the kernel works
		// through it: room for a few batches.
		if t.bulk, err = dialConn(nsfd, 8<<20); err != nil {
			t.req.close()
		}
	}
	if err != nil {
		if nsfd > 0 {
			unix.Close(nsfd)
		}
		return nil, classifyProbe(err, true, nil)
	}
	return t, nil
}

// Close closes the Table's sockets. Events calls end on their own
// context; close them first.
func (t *Table) Close() error {
	err := t.req.close()
	t.bulk.close()
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
	return classifyProbe(nil, loaded, t.req.execute(m, nil))
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
	if err := t.write(f); err != nil {
		t.stats.writeErrors.Add(1)
		return fmt.Errorf("write conntrack entry %v: %w", f, err)
	}
	return nil
}

func (t *Table) write(f Flow) error {
	err := t.create(f)
	if err == nil {
		t.stats.created.Add(1)
	}
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	return t.rebindOrUpdate(f)
}

// rebindOrUpdate handles a create that met EEXIST.
func (t *Table) rebindOrUpdate(f Flow) error {
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
	return t.update(f)
}

// Update writes f over the entry with its original tuple without
// checking the entry's NAT binding first: one round trip instead of
// three. Use it for update events of flows whose new event went through
// Write (which checked the binding). A missing entry is created as by
// Write.
func (t *Table) Update(f Flow) error {
	err := t.update(f)
	if errors.Is(err, unix.ENOENT) {
		err = t.write(f)
	}
	if err != nil {
		t.stats.writeErrors.Add(1)
		return fmt.Errorf("update conntrack entry %v: %w", f, err)
	}
	return nil
}

func (t *Table) update(f Flow) error {
	m, err := newFlowMessage(f, false, true)
	if err != nil {
		return err
	}
	err = t.req.execute(m, nil)
	if errors.Is(err, unix.EBUSY) {
		// The entry has a status bit f lacks (SEEN_REPLY or ASSURED,
		// which cannot be cleared): update the rest.
		if m, err = newFlowMessage(f, false, false); err != nil {
			return err
		}
		err = t.req.execute(m, nil)
	}
	if err != nil {
		return err
	}
	t.stats.updated.Add(1)
	return nil
}

// Apply applies one replicated event: New with Write, Update with Update,
// Destroy with Delete. An Overflow is the caller's to handle.
func (t *Table) Apply(ev Event) error {
	switch ev.Type {
	case New:
		return t.Write(ev.Flow)
	case Update:
		return t.Update(ev.Flow)
	case Destroy:
		return t.Delete(ev.Flow)
	}
	return fmt.Errorf("apply %v event: not a flow event", ev.Type)
}

// batchSize bounds a batch so its acks fit the bulk socket's buffer.
const batchSize = 256

// WriteBatch writes many flows, as Write does each, for bulk transfers
// and resyncs: creates go to the kernel in batches of 256 per datagram
// and only the flows that exist already take Write's slower path. It
// returns the errors of the flows that failed, joined.
func (t *Table) WriteBatch(fs []Flow) error {
	var errs []error
	msgs := make([]netlink.Message, 0, batchSize)
	idx := make([]int, 0, batchSize)
	for start := 0; start < len(fs); start += batchSize {
		msgs, idx = msgs[:0], idx[:0]
		for i, f := range fs[start:min(start+batchSize, len(fs))] {
			m, err := newFlowMessage(f, true, true)
			if err != nil {
				errs = append(errs, fmt.Errorf("write conntrack entry %v: %w", f, err))
				t.stats.writeErrors.Add(1)
				continue
			}
			msgs, idx = append(msgs, m), append(idx, start+i)
		}
		if len(msgs) == 0 {
			continue
		}
		res, err := t.bulk.exchange(msgs, nil)
		if err != nil {
			t.stats.writeErrors.Add(uint64(len(msgs)))
			return errors.Join(append(errs, fmt.Errorf("write conntrack batch: %w", err))...)
		}
		for k, err := range res {
			f := fs[idx[k]]
			if errors.Is(err, unix.EEXIST) {
				err = t.rebindOrUpdate(f)
			} else if err == nil {
				t.stats.created.Add(1)
			}
			if err != nil {
				t.stats.writeErrors.Add(1)
				errs = append(errs, fmt.Errorf("write conntrack entry %v: %w", f, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (t *Table) create(f Flow) error {
	m, err := newFlowMessage(f, true, true)
	if err != nil {
		return err
	}
	if err := t.req.execute(m, nil); err != nil {
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
	var cur Flow
	var derr error
	found := false
	if err := t.req.execute(m, func(m nlmsg) {
		_, cur, derr = decodeEntry(m.typ, m.flags, m.data)
		found = true
	}); err != nil {
		return Flow{}, err
	}
	if !found {
		return Flow{}, unix.ENOENT
	}
	return cur, derr
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
	if err := t.req.execute(m, nil); err != nil {
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
// filters) until fn returns false. The dump streams: entries are decoded
// as they arrive, never all held at once. fn must not call Dump, Count or
// DeleteWhere (it runs while the dump socket is busy). Entries that fail
// to decode are skipped and reported in the error returned at the end.
func (t *Table) Dump(mark, mask uint32, fn func(Flow) bool) error {
	req, err := dumpMessage(mark, mask)
	if err != nil {
		return err
	}
	var badErr error
	bad, stop := 0, false
	err = t.bulk.execute(req, func(m nlmsg) {
		if stop {
			return // the rest is read and dropped, leaving the socket clean
		}
		_, f, err := decodeEntry(m.typ, m.flags, m.data)
		if err != nil {
			if bad == 0 {
				badErr = err
			}
			bad++
			return
		}
		stop = !fn(f)
	})
	if err == nil && bad > 0 {
		err = fmt.Errorf("%d entries did not decode, first: %w", bad, badErr)
	}
	if err != nil {
		return fmt.Errorf("dump conntrack table: %w", err)
	}
	return nil
}
