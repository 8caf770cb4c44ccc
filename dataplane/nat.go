package dataplane

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// NATPick is how the kernel computes a new flow's slot in a nat cluster's
// table.
type NATPick int

const (
	// PickRoundRobin: a counter (numgen inc) over the slots.
	PickRoundRobin NATPick = iota
	// PickSourceHash: a hash of the client address, the same on both boxes.
	PickSourceHash
	// PickFiveTuple: a hash of the 5-tuple, the same on both boxes, so a
	// flow the peer never heard of still reaches its server after a
	// take-over.
	PickFiveTuple
)

// NATMarkBase tags the conntrack entries of nat flows: a flow of cluster
// i carries the mark NATMarkBase|i, and NATMarkMask selects them all.
const (
	NATMarkBase uint32 = 0x7a4d0000
	NATMarkMask uint32 = 0xffff0000
	// NATOutboundMark tags the servers' own connections (outbound policy).
	NATOutboundMark uint32 = NATMarkBase | 0xffff
)

// NATMark is the conntrack mark of cluster index's flows.
func NATMark(index int) uint32 { return NATMarkBase | uint32(index)&0xffff }

// NATService is one nat cluster as the kernel must serve it now: what the
// node's netfilter table is written from.
type NATService struct {
	Name  string
	Mark  uint32
	VIP   netip.Addr
	Port  uint16
	Proto string // tcp or udp
	Pick  NATPick
	// Seed of the kernel's hash, the same on both boxes (from the name).
	Seed uint32
	// Slots is the table a new flow's slot indexes: a server's address
	// per slot. Empty: no server is available, new flows are dropped.
	Slots []netip.AddrPort
	// Eligible are the servers a sticky client may still be sent to.
	Eligible []netip.AddrPort
	// SNAT, when valid, is the address the servers see as the source.
	SNAT     netip.Addr
	Allow    []netip.Prefix
	MaxConns int
	// Sticky, when not nil, keeps a client (masked to Mask bits) on its
	// server for Timeout after its last new flow.
	Sticky *NATSticky
}

// NATSticky is source-IP persistence in the kernel.
type NATSticky struct {
	Mask    int
	Timeout time.Duration
}

// NATKernel writes the nat services into the kernel, all at once and
// atomically: after an error the previous rules are still in force.
type NATKernel interface {
	ApplyNAT(services []NATService) error
}

// NATEngine serves the nat clusters: it keeps the kernel's rules in step
// with their pools (health, admin state, reloads).
type NATEngine struct {
	kernel NATKernel
	log    *slog.Logger

	mu       sync.Mutex // serialises Sync; guards the fields below
	clusters []*NATCluster
	applied  []NATService
	lastErr  error
	applies  uint64
	failures uint64
}

// NewNATEngine returns an engine that writes through k.
func NewNATEngine(k NATKernel, log *slog.Logger) *NATEngine {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &NATEngine{kernel: k, log: log}
}

// Sync writes every cluster's current table into the kernel; it does
// nothing when nothing changed since the last successful write.
func (e *NATEngine) Sync() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.syncLocked()
}

func (e *NATEngine) syncLocked() error {
	want := make([]NATService, 0, len(e.clusters))
	for _, c := range e.clusters {
		want = append(want, c.service())
	}
	if e.lastErr == nil && e.applied != nil && slices.EqualFunc(want, e.applied, sameService) {
		return nil
	}
	if err := e.kernel.ApplyNAT(want); err != nil {
		e.failures++
		if e.lastErr == nil || e.lastErr.Error() != err.Error() {
			e.log.Error("nat rules not updated; the previous rules stay in force", "err", err)
		}
		e.lastErr = err
		return fmt.Errorf("nat rules: %w", err)
	}
	if e.lastErr != nil {
		e.log.Info("nat rules updated again")
	}
	e.applied, e.lastErr = want, nil
	e.applies++
	return nil
}

// Add puts c in the engine's set (not yet written: see Sync), in place of
// a cluster of the same name (a reload's new runtime replaces the old one
// in the same write, so the VIP and port are never without rules).
func (e *NATEngine) Add(c *NATCluster) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, o := range e.clusters {
		if o == c {
			return
		}
		if o.name == c.name {
			e.clusters[i] = c
			return
		}
	}
	e.clusters = append(e.clusters, c)
}

// Remove takes c out of the set and writes the rules without it.
func (e *NATEngine) Remove(c *NATCluster) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	i := slices.Index(e.clusters, c)
	if i < 0 {
		return nil
	}
	e.clusters = slices.Delete(e.clusters, i, i+1)
	return e.syncLocked()
}

// NATEngineStats is what status shows of the engine.
type NATEngineStats struct {
	Applies, Failures uint64
	LastError         string
}

// Stats reports the engine's writes.
func (e *NATEngine) Stats() NATEngineStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := NATEngineStats{Applies: e.applies, Failures: e.failures}
	if e.lastErr != nil {
		st.LastError = e.lastErr.Error()
	}
	return st
}

// NATCluster is one `mode: nat` cluster: the kernel forwards its flows, so
// it has no listener; it keeps the kernel's table of it in step with its
// pool.
type NATCluster struct {
	name    string
	engine  *NATEngine
	pool    *Pool
	serving atomic.Bool
	index   atomic.Int32 // the cluster's position in the config: its mark

	vip      netip.Addr
	port     uint16
	proto    string
	algo     string
	snat     netip.Addr
	allow    []netip.Prefix
	maxConns int
	sticky   *NATSticky
	seed     uint32
}

// NewNATCluster builds cluster vc (at position index of the config) over
// pool; it is written into the kernel by e at Listen.
func NewNATCluster(vc config.VirtualCluster, index int, pool *Pool, e *NATEngine) (*NATCluster, error) {
	vip, err := netip.ParseAddr(vc.VIP)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: vip %q: %w", vc.Name, vc.VIP, err)
	}
	if vc.Port < 1 || vc.Port > 65535 {
		return nil, fmt.Errorf("cluster %s: port %d out of range 1..65535", vc.Name, vc.Port)
	}
	if pool == nil || e == nil {
		return nil, errors.New("cluster " + vc.Name + ": nil pool or engine")
	}
	c := &NATCluster{
		name: vc.Name, engine: e, pool: pool,
		vip: vip.Unmap(), port: uint16(vc.Port), proto: vc.Protocol, algo: vc.Algorithm,
		maxConns: vc.MaxConns,
	}
	c.index.Store(int32(index))
	h := fnv.New32a()
	_, _ = h.Write([]byte(vc.Name))
	c.seed = h.Sum32()
	for _, a := range vc.Allow {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: allow %q: %w", vc.Name, a, err)
		}
		c.allow = append(c.allow, p.Masked())
	}
	if vc.NAT != nil && vc.NAT.Return == config.ReturnSNAT {
		if c.snat, err = netip.ParseAddr(vc.NAT.SNATAddress); err != nil {
			return nil, fmt.Errorf("cluster %s: nat.snat_address %q: %w", vc.Name, vc.NAT.SNATAddress, err)
		}
		c.snat = c.snat.Unmap()
	}
	if p := vc.Persistence; p != nil {
		c.sticky = &NATSticky{Mask: p.Mask, Timeout: p.Timeout}
	}
	return c, nil
}

// Name is the cluster's name.
func (c *NATCluster) Name() string { return c.name }

// Mark is the conntrack mark of the cluster's flows.
func (c *NATCluster) Mark() uint32 { return NATMark(int(c.index.Load())) }

// SetIndex moves the cluster to position i of a reloaded config.
func (c *NATCluster) SetIndex(i int) { c.index.Store(int32(i)) }

// Listen writes the cluster's rules into the kernel, on both boxes: the
// backup has them ready, so a take-over changes no rule. An error here
// stops the node at start (it never claims a VIP the rules do not serve).
func (c *NATCluster) Listen() error {
	c.engine.Add(c)
	c.pool.OnRefresh(func() {
		_ = c.engine.Sync() // logged by the engine; the old rules stay
	})
	return c.engine.Sync()
}

// Serve waits for ctx: the kernel does the serving.
func (c *NATCluster) Serve(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// SetActive records whether this box serves (is MASTER); the rules are the
// same either way.
func (c *NATCluster) SetActive(on bool) { c.serving.Store(on) }

// Serving reports what SetActive last said.
func (c *NATCluster) Serving() bool { return c.serving.Load() }

// Drain returns at once: established flows live in the kernel and end on
// their own (or move to the peer with their state).
func (c *NATCluster) Drain(context.Context) {}

// Close takes the cluster out of the kernel's rules (a reload removed it).
func (c *NATCluster) Close() error {
	c.pool.OnRefresh(nil)
	return c.engine.Remove(c)
}

// service is the cluster as the kernel must serve it now.
func (c *NATCluster) service() NATService {
	avail := c.pool.Snapshot()
	s := NATService{
		Name: c.name, Mark: c.Mark(), VIP: c.vip, Port: c.port, Proto: c.proto,
		Seed: c.seed, SNAT: c.snat, Allow: c.allow, MaxConns: c.maxConns, Sticky: c.sticky,
	}
	for _, srv := range avail {
		s.Eligible = append(s.Eligible, srv.Addr)
	}
	switch c.algo {
	case WeightedRoundRobin:
		s.Pick, s.Slots = PickRoundRobin, wrrSlots(avail)
	case SourceHash, MaglevHash:
		s.Pick = PickSourceHash
		if c.algo == MaglevHash {
			s.Pick = PickFiveTuple
		}
		bs := make([]MaglevBackend, len(avail))
		for i, srv := range avail {
			bs[i] = MaglevBackend{ID: srv.Name + "/" + srv.Addr.String(), Weight: srv.Weight}
		}
		for _, i := range Maglev(bs, MaglevSize) {
			s.Slots = append(s.Slots, avail[i].Addr)
		}
	default:
		s.Pick, s.Slots = PickRoundRobin, s.Eligible
	}
	return s
}

// MaglevHash is the algorithm name of the consistent 5-tuple hash (nat only).
const MaglevHash = "maglev"

// wrrSlots is one period of smooth weighted round robin over servers
// (effective weights, agent.go, divided by their gcd, at most maxWRRSlots
// slots): the kernel's counter walks it, so a server of weight 3 gets
// three flows in every period, spread out. An agent's new load changes
// the slots, and the pool's Refresh rewrites them.
func wrrSlots(servers []*Server) []netip.AddrPort {
	if len(servers) == 0 {
		return nil
	}
	g := 0
	for _, s := range servers {
		g = gcd(g, natWeight(s))
	}
	w := make([]int, len(servers))
	total := 0
	for i, s := range servers {
		w[i] = natWeight(s) / g
		total += w[i]
	}
	if total > maxWRRSlots { // scale down, keeping every server in
		scaled := 0
		for i := range w {
			w[i] = max(w[i]*maxWRRSlots/total, 1)
			scaled += w[i]
		}
		total = scaled
	}
	cur := make([]int, len(servers))
	out := make([]netip.AddrPort, 0, total)
	for range total {
		best := 0
		for i := range servers {
			cur[i] += w[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		out = append(out, servers[best].Addr)
	}
	return out
}

const maxWRRSlots = 4096

// natWeight is the server's effective weight, at least 1.
func natWeight(s *Server) int { return int(max(s.EffectiveWeight(), 1)) }

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// sameService reports whether two services would be written alike.
func sameService(a, b NATService) bool {
	return a.Name == b.Name && a.Mark == b.Mark && a.VIP == b.VIP && a.Port == b.Port &&
		a.Proto == b.Proto && a.Pick == b.Pick && a.Seed == b.Seed && a.SNAT == b.SNAT &&
		a.MaxConns == b.MaxConns && slices.Equal(a.Slots, b.Slots) &&
		slices.Equal(a.Eligible, b.Eligible) && slices.Equal(a.Allow, b.Allow) &&
		(a.Sticky == nil) == (b.Sticky == nil) && (a.Sticky == nil || *a.Sticky == *b.Sticky)
}
