// Package vip claims and releases the virtual IPs of one interface and
// tells the segment about them: gratuitous ARP for IPv4, unsolicited
// neighbour advertisements for IPv6. It also watches interface carrier so
// the election can go to FAULT when a tracked link drops.
//
// The kernel-facing parts (netlink, raw sockets) sit behind two small
// interfaces, addrOps and announcer, so the claim/release logic is tested
// without root; the Linux implementations live in the _linux.go files and
// other platforms get ErrUnsupported.
package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnsupported is returned (wrapped) by New and WatchCarrier on
// platforms other than Linux.
var ErrUnsupported = errors.New("vip: unsupported platform")

// ErrClosed is returned by the Manager's methods after Close.
var ErrClosed = errors.New("vip: manager closed")

// ErrNotClaimed is returned by Announce when the VIPs are not claimed:
// announcing addresses we do not hold would pull traffic to a node that
// drops it.
var ErrNotClaimed = errors.New("vip: not claimed")

// unsupportedError reads "vip: unsupported on <GOOS>" and matches
// ErrUnsupported with errors.Is.
type unsupportedError struct{}

func (unsupportedError) Error() string { return "vip: unsupported on " + runtime.GOOS }
func (unsupportedError) Unwrap() error { return ErrUnsupported }

// GARP tunes announcements. It mirrors failover.garp in the config.
type GARP struct {
	// Count is how many rounds of announcements a claim sends; values
	// below 1 mean 1, since a claim nobody hears about is useless.
	Count int
	// Interval separates the rounds of one burst.
	Interval time.Duration
	// Refresh, if positive, re-announces every VIP this often while
	// claimed, for switches and hosts that age out entries.
	Refresh time.Duration
}

// Held is one VIP as the kernel sees it.
type Held struct {
	Prefix    netip.Prefix
	Interface string
	// Present reports whether the address is on the interface right now.
	Present bool
}

// Stats are monotonically increasing counters, for status output.
type Stats struct {
	Claims    uint64 // Claim calls that took the VIPs from released to claimed
	Releases  uint64 // Release calls that took them from claimed to released
	GARPsSent uint64 // IPv4 announcements, each an ARP request plus an ARP reply
	NAsSent   uint64 // IPv6 unsolicited neighbour advertisements
	Readded   uint64 // VIPs that Reconcile found missing and added back
	Errors    uint64 // failed kernel operations and announcements
}

// addrOps lists, adds and deletes addresses on the managed interface.
// Add treats "already present" as success, Del treats "absent" as success.
type addrOps interface {
	List() ([]netip.Prefix, error)
	Add(p netip.Prefix) error
	Del(p netip.Prefix) error
}

// announcer tells the segment that an address now lives here: GARP
// (request and reply) for IPv4, an unsolicited NA for IPv6. It must be safe
// for concurrent use.
type announcer interface {
	Announce(addr netip.Addr) error
	Close() error
}

// Manager owns the VIPs of one interface. Its methods are safe for
// concurrent use.
type Manager struct {
	iface string
	vips  []netip.Prefix
	garp  GARP
	log   *slog.Logger
	ops   addrOps
	ann   announcer

	mu      sync.Mutex // serialises Claim/Release/Reconcile/Close
	claimed bool
	closed  bool
	stop    context.CancelFunc // ends the running burst/refresh goroutine
	wg      sync.WaitGroup     // that goroutine

	// state is the state file ("" for none) and rec what it records
	// (see state.go); guarded by mu.
	state string
	rec   []netip.Prefix

	claims, releases, garps, nas, readded, errs atomic.Uint64

	failMu  sync.Mutex // guards annFail
	annFail map[netip.Prefix]annFailure
}

// annFailure is the last failed announcement of a VIP that was logged,
// and how many identical ones have not been since.
type annFailure struct {
	msg     string
	logged  time.Time
	skipped int
}

// annFailEvery is how often the same announcement failure is logged again:
// a master alone announces once a second, and one failure that cannot go
// away (an interface without an Ethernet address) must not flood the log.
const annFailEvery = time.Minute

// New returns a Manager for the VIPs of iface. It does not touch the
// interface; call Cleanup at start-up and Claim when elected. On platforms
// other than Linux it returns an error wrapping ErrUnsupported.
func New(iface string, vips []netip.Prefix, g GARP, log *slog.Logger) (*Manager, error) {
	ops, ann, err := newPlatform(iface)
	if err != nil {
		return nil, err
	}
	m, err := newManager(iface, vips, g, log, ops, ann)
	if err != nil {
		ann.Close()
		return nil, err
	}
	return m, nil
}

func newManager(iface string, vips []netip.Prefix, g GARP, log *slog.Logger, ops addrOps, ann announcer) (*Manager, error) {
	if iface == "" {
		return nil, errors.New("vip: no interface given")
	}
	uniq, err := uniqPrefixes(vips)
	if err != nil {
		return nil, err
	}
	if g.Count < 1 {
		g.Count = 1
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{
		iface: iface,
		vips:  uniq,
		garp:  g,
		log:   log.With("iface", iface),
		ops:   ops,
		ann:   ann,
	}, nil
}

// uniqPrefixes checks and unmaps the prefixes and drops duplicates.
func uniqPrefixes(vips []netip.Prefix) ([]netip.Prefix, error) {
	seen := make(map[netip.Prefix]bool, len(vips))
	var uniq []netip.Prefix
	for _, p := range vips {
		if !p.IsValid() {
			return nil, fmt.Errorf("vip: invalid prefix %v", p)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits())
		if !seen[p] {
			seen[p] = true
			uniq = append(uniq, p)
		}
	}
	return uniq, nil
}

// Claim adds every VIP to the interface (one already present is fine),
// sends the first announcement for each before returning and the remaining
// Count-1 rounds Interval apart in the background, then re-announces every
// Refresh if that is set. The background work ends with ctx, Release or
// Close. Claiming again while claimed re-adds and restarts the burst.
// Every VIP is attempted even if one fails; the errors are joined.
func (m *Manager) Claim(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.stopAnnouncing()
	var errs []error
	if err := m.record(union(m.rec, m.vips)); err != nil {
		errs = append(errs, err)
	}
	for _, p := range m.vips {
		if err := m.ops.Add(p); err != nil {
			m.errs.Add(1)
			m.log.Error("adding VIP failed", "vip", p, "err", err)
			errs = append(errs, fmt.Errorf("vip: add %v to %s: %w", p, m.iface, err))
		}
	}
	if !m.claimed {
		m.claimed = true
		m.claims.Add(1)
		m.log.Info("VIPs claimed", "vip", m.vips)
	}
	errs = append(errs, m.burst(ctx))
	return errors.Join(errs...)
}

// SetVIPs replaces the VIPs and the announcement settings (a config
// reload). While claimed, the new VIPs are added and announced (a full
// burst), the removed ones are deleted, and the others stay on the
// interface throughout, so the VIPs that remain never have a gap;
// refreshes then cover the new set. While released, only the lists
// change, for the next Claim.
func (m *Manager) SetVIPs(ctx context.Context, vips []netip.Prefix, g GARP) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	uniq, err := uniqPrefixes(vips)
	if err != nil {
		return err
	}
	if g.Count < 1 {
		g.Count = 1
	}
	keep := make(map[netip.Prefix]bool, len(uniq))
	for _, p := range uniq {
		keep[p] = true
	}
	old := make(map[netip.Prefix]bool, len(m.vips))
	for _, p := range m.vips {
		old[p] = true
	}
	var added, removed []netip.Prefix
	for _, p := range uniq {
		if !old[p] {
			added = append(added, p)
		}
	}
	for _, p := range m.vips {
		if !keep[p] {
			removed = append(removed, p)
		}
	}
	if err := m.refuseForeign(added); err != nil {
		return err // nothing changed: the box's own address is never taken
	}
	m.stopAnnouncing()
	m.vips, m.garp = uniq, g
	if !m.claimed {
		return nil
	}
	var errs []error
	if err := m.record(union(m.rec, uniq)); err != nil {
		errs = append(errs, err)
	}
	var kept []netip.Prefix // removals that failed stay recorded
	for _, p := range added {
		if err := m.ops.Add(p); err != nil {
			m.errs.Add(1)
			m.log.Error("adding VIP failed", "vip", p, "err", err)
			errs = append(errs, fmt.Errorf("vip: add %v to %s: %w", p, m.iface, err))
			continue
		}
		m.log.Info("VIP added by a reload", "vip", p)
	}
	for _, p := range removed {
		if err := m.ops.Del(p); err != nil {
			m.errs.Add(1)
			m.log.Error("removing VIP failed", "vip", p, "err", err)
			errs = append(errs, fmt.Errorf("vip: remove %v from %s: %w", p, m.iface, err))
			kept = append(kept, p)
			continue
		}
		m.log.Info("VIP removed by a reload", "vip", p)
	}
	if err := m.record(union(uniq, kept)); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, m.burstOf(ctx, added))
	return errors.Join(errs...)
}

// Release stops announcing and removes every VIP (one already absent is
// fine).
func (m *Manager) Release() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.stopAnnouncing()
	err := m.remove("VIP released")
	if m.claimed {
		m.claimed = false
		m.releases.Add(1)
	}
	return err
}

// Cleanup removes VIPs left on the interface by an earlier run that
// crashed, logging each one it finds. Call it at start-up, before the
// first election.
func (m *Manager) Cleanup() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.stopAnnouncing()
	m.claimed = false
	if m.state != "" {
		return m.adopt()
	}
	return m.remove("removed VIP left over from an earlier run")
}

// remove deletes every VIP and logs msg at info for each that was present.
// m.mu must be held.
func (m *Manager) remove(msg string) error {
	present, lerr := m.present()
	var errs []error
	var kept []netip.Prefix
	for _, p := range union(m.vips, m.rec) {
		if err := m.ops.Del(p); err != nil {
			m.errs.Add(1)
			m.log.Error("removing VIP failed", "vip", p, "err", err)
			errs = append(errs, fmt.Errorf("vip: remove %v from %s: %w", p, m.iface, err))
			kept = append(kept, p)
			continue
		}
		if lerr != nil || present[p] {
			m.log.Info(msg, "vip", p)
		}
	}
	if err := m.record(kept); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// present reads the interface's addresses from the kernel.
func (m *Manager) present() (map[netip.Prefix]bool, error) {
	addrs, err := m.ops.List()
	if err != nil {
		m.errs.Add(1)
		return nil, fmt.Errorf("vip: list addresses of %s: %w", m.iface, err)
	}
	set := make(map[netip.Prefix]bool, len(addrs))
	for _, a := range addrs {
		set[netip.PrefixFrom(a.Addr().Unmap(), a.Bits())] = true
	}
	return set, nil
}

// Reconcile, while claimed, adds back any VIP that someone deleted from
// the interface and announces it once; it returns the VIPs it re-added.
// When not claimed it does nothing.
func (m *Manager) Reconcile(ctx context.Context) ([]netip.Prefix, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if !m.claimed {
		return nil, nil
	}
	present, err := m.present()
	if err != nil {
		return nil, err
	}
	var readded []netip.Prefix
	var errs []error
	for _, p := range m.vips {
		if present[p] {
			continue
		}
		if err := m.ops.Add(p); err != nil {
			m.errs.Add(1)
			m.log.Error("re-adding VIP failed", "vip", p, "err", err)
			errs = append(errs, fmt.Errorf("vip: re-add %v to %s: %w", p, m.iface, err))
			continue
		}
		m.readded.Add(1)
		m.log.Info("VIP was missing, re-added", "vip", p)
		readded = append(readded, p)
	}
	errs = append(errs, m.round(ctx, readded))
	return readded, errors.Join(errs...)
}

// Held reports each VIP and whether the kernel has it on the interface. If
// the kernel cannot be asked, every VIP is reported absent.
func (m *Manager) Held() []Held {
	m.mu.Lock()
	defer m.mu.Unlock()
	var present map[netip.Prefix]bool
	var err error
	if !m.closed {
		present, err = m.present()
	}
	if err != nil {
		m.log.Debug("reading VIPs failed", "err", err)
	}
	out := make([]Held, len(m.vips))
	for i, p := range m.vips {
		out[i] = Held{Prefix: p, Interface: m.iface, Present: present[p]}
	}
	return out
}

// Stats returns a snapshot of the counters.
func (m *Manager) Stats() Stats {
	return Stats{
		Claims:    m.claims.Load(),
		Releases:  m.releases.Load(),
		GARPsSent: m.garps.Load(),
		NAsSent:   m.nas.Load(),
		Readded:   m.readded.Load(),
		Errors:    m.errs.Load(),
	}
}

// Close stops announcing and frees the sockets. It leaves the addresses
// where they are: call Release first to step down. After Close every
// method but Held and Stats returns ErrClosed.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.stopAnnouncing()
	if err := m.ann.Close(); err != nil {
		return fmt.Errorf("vip: close announcer for %s: %w", m.iface, err)
	}
	return nil
}
