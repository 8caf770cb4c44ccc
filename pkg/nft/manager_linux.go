//go:build linux

package nft

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// sndbuf is the send buffer forced on the netlink socket: one Apply is one
// sendmsg, and a Maglev slot table of 65537 entries is a few MB.
const sndbuf = 32 << 20

// elemChunk bounds the elements per message: a netlink attribute length
// is 16 bits, so a large slot table is sent as several messages of the
// same transaction.
const elemChunk = 1024

// Manager owns one inet table. Its methods are safe for concurrent use
// and serialised; it keeps working in the network namespace it was opened
// in, whichever thread calls it.
type Manager struct {
	mu    sync.Mutex
	log   *slog.Logger
	table string
	nft   *nftables.Conn
	raw   *netlink.Conn
	last  *Spec // the last Spec applied, for the persistence and counter calls
	// mutate, if set, edits the rendered ruleset before it is queued:
	// tests use it to make the kernel refuse a transaction.
	mutate func(*rendered)
}

// New opens netlink connections in the current network namespace for the
// given table ("" means DefaultTable).
func New(table string, log *slog.Logger) (*Manager, error) { return open(0, table, log) }

// NewInNetns is New for the network namespace open at fd (tests, or a
// daemon that runs the dataplane in a namespace). fd may be closed after.
func NewInNetns(fd int, table string, log *slog.Logger) (*Manager, error) {
	if fd <= 0 {
		return nil, fmt.Errorf("nft: netns fd %d", fd)
	}
	return open(fd, table, log)
}

func open(fd int, table string, log *slog.Logger) (*Manager, error) {
	if table == "" {
		table = DefaultTable
	}
	if !plainID.MatchString(table) {
		return nil, fmt.Errorf("nft: table %q: want 1-32 of [A-Za-z0-9_-]", table)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, err := nftables.New(nftables.WithNetNSFd(fd), nftables.AsLasting(), nftables.WithSockOptions(bigSendBuffer))
	if err != nil {
		return nil, fmt.Errorf("nft: open netlink: %w", err)
	}
	raw, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: fd})
	if err != nil {
		conn.CloseLasting()
		return nil, fmt.Errorf("nft: open netlink: %w", err)
	}
	return &Manager{log: log.With("table", table), table: table, nft: conn, raw: raw}, nil
}

func bigSendBuffer(c *netlink.Conn) error {
	sc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := sc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndbuf)
		if serr != nil { // without CAP_NET_ADMIN: as large as wmem_max allows
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, sndbuf)
		}
	}); err != nil {
		return err
	}
	return serr
}

// Close releases the netlink connections; the table stays as it is.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return errors.Join(m.nft.CloseLasting(), m.raw.Close())
}

// Table is the name of the managed table.
func (m *Manager) Table() string { return m.table }

// owned reports whether our table exists; a table of our name without our
// comment is ErrForeignTable.
func (m *Manager) owned() (bool, error) {
	found, comment, err := tableComment(m.raw, m.table)
	if err != nil {
		return false, err
	}
	if found && comment != ownerComment {
		return false, fmt.Errorf("%w: inet %s (comment %q); remove it or choose another table name", ErrForeignTable, m.table, comment)
	}
	return found, nil
}

// Exists reports whether Tandem's table is in the kernel.
func (m *Manager) Exists() (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.owned()
}

// Remove deletes the table and everything in it; no error if it is
// absent. A foreign table is left alone. It ends established flows too:
// with the last nat chain of the namespace gone the kernel unregisters
// its NAT hooks, conntrack entries are no longer translated, and the
// box resets the clients' next segments. Remove is for taking the nat
// engine out of service, never part of a failover (both boxes keep the
// table; only the VIP moves).
func (m *Manager) Remove() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	found, err := m.owned()
	if err != nil || !found {
		return err
	}
	m.nft.DelTable(m.tbl())
	if err := m.nft.Flush(); err != nil {
		return fmt.Errorf("nft: delete table inet %s: %w", m.table, err)
	}
	m.last = nil
	m.log.Info("nftables table removed")
	return nil
}

func (m *Manager) tbl() *nftables.Table {
	return &nftables.Table{Name: m.table, Family: nftables.TableFamilyINet}
}

// Apply makes the table match spec in one transaction: the table is
// created if absent, otherwise kept, its chains flushed and refilled, its
// static maps refilled, and its dynamic maps (persistence entries) and
// counters kept. If the kernel refuses anything, nothing changes.
func (m *Manager) Apply(spec Spec) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if spec.Table == "" {
		spec.Table = m.table
	}
	if spec.Table != m.table {
		return fmt.Errorf("nft: spec for table %q, manager owns %q", spec.Table, m.table)
	}
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("nft: invalid spec: %w", err)
	}
	found, err := m.owned()
	if err != nil {
		return fmt.Errorf("nft: apply: %w", err)
	}
	if !found {
		if err := createTable(m.raw, m.table); err != nil {
			return fmt.Errorf("nft: apply: %w", err)
		}
		m.log.Info("nftables table created")
	}
	have, err := m.state()
	if err != nil {
		return fmt.Errorf("nft: apply: %w", err)
	}
	r := render(spec)
	if m.mutate != nil {
		m.mutate(r)
	}
	p, qerr := m.queue(have, r)
	if qerr != nil {
		// The connection cannot drop queued messages: end the batch with
		// one the kernel must refuse, so the whole transaction aborts.
		m.nft.DelTable(&nftables.Table{Name: abortTable, Family: nftables.TableFamilyINet})
	}
	if err := errors.Join(qerr, m.nft.Flush()); err != nil {
		if !found { // leave things as they were: no table
			m.nft.DelTable(m.tbl())
			if derr := m.nft.Flush(); derr != nil {
				m.log.Warn("could not delete the empty table after a failed apply", "err", derr)
			}
		}
		return fmt.Errorf("nft: apply table inet %s: %w", m.table, err)
	}
	applied := spec
	m.last = &applied
	m.log.Debug("nftables ruleset applied", "services", len(spec.Services), "rules", len(r.rules),
		"new_chains", len(p.NewChains), "deleted_chains", len(p.DelChains), "deleted_sets", len(p.DelSets))
	return nil
}

// state lists the table's chains, named sets and stateful objects.
func (m *Manager) state() (tableState, error) {
	st := tableState{Sets: map[string]string{}}
	chains, err := m.nft.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return st, fmt.Errorf("list chains: %w", err)
	}
	for _, c := range chains {
		if c.Table.Name == m.table {
			st.Chains = append(st.Chains, c.Name)
		}
	}
	sets, err := m.nft.GetSets(m.tbl())
	if err != nil {
		return st, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		if !s.Anonymous && !strings.HasPrefix(s.Name, "__") {
			st.Sets[s.Name] = shape(s)
		}
	}
	objs, err := m.nft.GetNamedObjects(m.tbl())
	if err != nil {
		return st, fmt.Errorf("list objects: %w", err)
	}
	for _, o := range objs {
		if n, ok := o.(*nftables.NamedObj); ok {
			st.Counters = append(st.Counters, objKey(n.Type, n.Name))
		}
	}
	return st, nil
}

func objKey(t nftables.ObjType, name string) string { return fmt.Sprintf("%d:%s", t, name) }

// queue puts the whole transaction on the connection, in an order the
// kernel accepts: new chains before the rules that jump to them, sets and
// objects before the rules that use them, deletions after the flushes that
// drop the last references.
func (m *Manager) queue(have tableState, r *rendered) (plan, error) {
	var wantChains []string
	for _, c := range r.chains {
		wantChains = append(wantChains, c.Name)
	}
	var wantSets []setWant
	for _, s := range r.sets {
		wantSets = append(wantSets, setWant{Name: s.set.Name, Shape: shape(s.set), Dynamic: s.dynamic})
	}
	var wantObjs []string
	for _, c := range r.counters {
		wantObjs = append(wantObjs, objKey(nftables.ObjTypeCounter, c))
	}
	p := makePlan(have, wantChains, wantSets, wantObjs)

	var errs []error
	c := m.nft
	for _, ch := range r.chains {
		if slices.Contains(p.NewChains, ch.Name) {
			c.AddChain(ch)
		}
	}
	for _, name := range have.Chains { // kept and doomed chains alike
		c.FlushChain(&nftables.Chain{Name: name, Table: r.table})
	}
	for _, s := range r.sets {
		switch p.Sets[s.set.Name] {
		case setRecreate:
			c.DelSet(&nftables.Set{Name: s.set.Name, Table: r.table})
			errs = append(errs, m.addSet(s))
		case setCreate:
			errs = append(errs, m.addSet(s))
		case setRefill:
			c.FlushSet(s.set)
			errs = append(errs, m.addElems(s.set, s.elems))
		}
	}
	for _, name := range r.counters {
		if slices.Contains(p.NewCounters, objKey(nftables.ObjTypeCounter, name)) {
			c.AddObj(&nftables.CounterObj{Table: r.table, Name: name})
		}
	}
	for _, rule := range r.rules {
		c.AddRule(rule)
	}
	// Sets before chains: a verdict map holds references to the chains
	// its elements go to.
	for _, name := range p.DelSets {
		c.DelSet(&nftables.Set{Name: name, Table: r.table})
	}
	for _, name := range p.DelChains {
		c.DelChain(&nftables.Chain{Name: name, Table: r.table})
	}
	for _, key := range p.DelCounters {
		var t nftables.ObjType
		var name string
		if _, err := fmt.Sscanf(key, "%d:%s", &t, &name); err == nil {
			c.DeleteObject(&nftables.NamedObj{Table: r.table, Name: name, Type: t})
		}
	}
	return p, errors.Join(errs...)
}

// abortTable names a table that never exists: deleting it fails, which
// aborts a transaction that must not commit.
const abortTable = "tandem_abort_no_such_table"

func (m *Manager) addSet(s renderedSet) error {
	if err := m.nft.AddSet(s.set, nil); err != nil {
		return fmt.Errorf("set %s: %w", s.set.Name, err)
	}
	return m.addElems(s.set, s.elems)
}

func (m *Manager) addElems(s *nftables.Set, elems []nftables.SetElement) error {
	for len(elems) > 0 {
		n := min(len(elems), elemChunk)
		if err := m.nft.SetAddElements(s, elems[:n]); err != nil {
			return fmt.Errorf("set %s elements: %w", s.Name, err)
		}
		elems = elems[n:]
	}
	return nil
}
