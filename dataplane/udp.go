package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// Defaults of UDPOptions.
const (
	DefaultFlowIdle = 30 * time.Second
	// DefaultMaxFlows is the most live flows a UDP cluster holds by
	// descriptor when UDPOptions.FdFlows is 0. Each flow holds one
	// upstream socket, and the node may not hold more than 20,000
	// descriptors (a hard limit it cannot raise), so it is also at most
	// three quarters of RLIMIT_NOFILE. Beyond it flows park their sockets
	// in io_uring (UDPParking) up to DefaultMaxParkedFlows; without
	// io_uring it is the cap.
	DefaultMaxFlows = 15000
	// DefaultMaxParkedFlows caps a cluster's live flows when sockets can
	// be parked and UDPOptions.MaxFlows is 0. A flow costs the proxy
	// about 230 bytes and the kernel about 3 KiB for its socket (slab:
	// UDP, sock_inode_cache, filp, dentry), so the cap bounds what a
	// flood of spoofed sources can take: about 500 MB.
	DefaultMaxParkedFlows = 150000
	// udpStandbyIdle ends flows sooner while the cluster is not serving:
	// no client datagram is relayed, so a flow only waits for the answers
	// to queries already in flight.
	udpStandbyIdle = time.Second
	// udpMaxDatagram is the largest datagram relayed: UDP's own limit.
	udpMaxDatagram = 65535
)

// UDPOptions tune a UDPCluster. Zero values take the defaults.
type UDPOptions struct {
	// FlowIdle ends a flow after this long without a datagram either way
	// [30s].
	FlowIdle time.Duration
	// Sticky, if not nil, is consulted before the balancer when a flow
	// starts: a client goes back to its server while that server is
	// available. It is the same interface as Options.Sticky.
	Sticky StickyTable
	// MaxFlows caps live flows whatever max_conns says
	// [DefaultMaxParkedFlows where sockets can be parked, else FdFlows].
	MaxFlows int
	// FdFlows is how many flows hold their socket by descriptor; later
	// ones park it in io_uring [DefaultMaxFlows, at most 3/4 of
	// RLIMIT_NOFILE].
	FdFlows int
	// Loops is the number of event loops, each with its own socket on
	// the VIP (SO_REUSEPORT), flow table and goroutine [1].
	Loops int
}

// Drop reasons of a UDP cluster, the keys of UDPStats.Drops.
const (
	DropStandby       = "standby"        // the node is not MASTER
	DropAllow         = "allow"          // the client is outside `allow`
	DropMaxConns      = "max_conns"      // max_conns (or MaxFlows) live flows
	DropNoServer      = "no_server"      // no server is available
	DropOversize      = "oversize"       // larger than can be relayed whole
	DropMalformed     = "malformed"      // no usable source or destination
	DropUpstreamError = "upstream_error" // a server socket failed (open, send, ICMP error)
	DropClientError   = "client_error"   // an answer could not be sent to the client
	DropLateAnswer    = "late_answer"    // an answer from the server a retry left
)

// udpReason indexes the per-reason drop counters.
type udpReason int

const (
	udpStandby udpReason = iota
	udpAllow
	udpMaxConns
	udpNoServer
	udpOversize
	udpMalformed
	udpUpstreamError
	udpClientError
	udpLateAnswer
	numUDPReasons
)

var udpReasonNames = [numUDPReasons]string{
	DropStandby, DropAllow, DropMaxConns, DropNoServer, DropOversize, DropMalformed,
	DropUpstreamError, DropClientError, DropLateAnswer,
}

func (r udpReason) String() string { return udpReasonNames[r] }

// UDPCluster is one `protocol: udp` virtual cluster. Each client address
// and port is a flow: the first datagram picks a server (sticky first)
// and opens a socket connected to it, which the flow keeps until it has
// been idle for FlowIdle; the server's answers go back to the client from
// the very address and port the client sent to. All of it runs on a few
// epoll loops: no goroutine and no buffer per flow.
type UDPCluster struct {
	name     string
	addr     netip.AddrPort
	pool     *Pool
	opts     UDPOptions
	log      *slog.Logger
	allow    allowList
	maxFlows int64
	epoch    time.Time // the loops' clock starts here
	// Requests are timed (udp_retry.go) when timed is set: wait is how
	// long a server has to answer, retry (0: off) the retry_timeout, and
	// match how answers find their requests.
	timed       bool
	wait, retry int64
	match       udpMatch
	pendRing    int // the ring's size, a power of two (tests lower it)
	// sources are the local addresses upstream sockets bind to, in turn
	// (source_addresses); none: the kernel's choice.
	sources []netip.Addr
	// park: flows beyond fdShare descriptor-held ones park their sockets.
	park    bool
	fdShare int64
	fdFlows atomic.Int64 // live flows holding a descriptor, all loops
	parked  atomic.Int64 // live parked flows, all loops

	serving atomic.Bool
	flows   inflight // live, over all loops
	panics  atomic.Uint64
	dropLog [numUDPReasons]logLimiter

	mu     sync.Mutex
	loops  []*uloop
	bound  netip.AddrPort
	served bool

	// maxDatagram is the largest client datagram relayed (tests lower it).
	maxDatagram int
	// blockWait makes the loops block in epoll_wait instead of Go's poller.
	blockWait bool
	// testHook, if set, sees every client datagram before it is handled.
	testHook func(p []byte)
}

// NewUDPCluster builds the UDP cluster of vc over pool. It checks vc's
// address and allow list; it binds nothing (see Listen).
func NewUDPCluster(vc config.VirtualCluster, pool *Pool, opts UDPOptions, log *slog.Logger) (*UDPCluster, error) {
	vip, err := netip.ParseAddr(vc.VIP)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: vip %q: %w", vc.Name, vc.VIP, err)
	}
	if vc.Port < 0 || vc.Port > 65535 { // 0: any free port, for tests
		return nil, fmt.Errorf("cluster %s: port %d out of range 0..65535", vc.Name, vc.Port)
	}
	allow, err := parseAllow(vc.Allow)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", vc.Name, err)
	}
	if pool == nil {
		return nil, fmt.Errorf("cluster %s: nil pool", vc.Name)
	}
	if opts.FlowIdle <= 0 {
		opts.FlowIdle = DefaultFlowIdle
	}
	if opts.Loops < 1 {
		opts.Loops = 1
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var sources []netip.Addr
	for _, a := range vc.SourceAddresses {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: source_addresses: %w", vc.Name, err)
		}
		sources = append(sources, ip.Unmap())
	}
	fdShare := int64(opts.FdFlows)
	if fdShare <= 0 {
		fdShare = min(DefaultMaxFlows, fdBudget())
	}
	park := UDPParking() == nil
	limit := int64(opts.MaxFlows)
	switch {
	case !park:
		limit = fdShare
		if opts.MaxFlows > 0 {
			limit = min(limit, int64(opts.MaxFlows))
		}
	case limit <= 0:
		limit = DefaultMaxParkedFlows
	}
	if vc.MaxConns > 0 {
		limit = min(limit, int64(vc.MaxConns))
	}
	retry := int64(vc.RetryTimeout)
	wait := retry
	if wait <= 0 {
		wait = int64(udpAnswerWait)
	}
	return &UDPCluster{
		timed:       retry > 0 || vc.Passive != nil,
		wait:        wait,
		retry:       max(retry, 0),
		match:       udpMatchFor(vc),
		pendRing:    udpPendRing,
		sources:     sources,
		park:        park,
		fdShare:     fdShare,
		name:        vc.Name,
		addr:        netip.AddrPortFrom(vip.Unmap(), uint16(vc.Port)),
		pool:        pool,
		opts:        opts,
		log:         log.With("cluster", vc.Name),
		allow:       allow,
		maxFlows:    limit,
		epoch:       time.Now(),
		maxDatagram: udpMaxDatagram,
	}, nil
}

// Name is the cluster's name.
func (c *UDPCluster) Name() string { return c.name }

// Addr is the VIP and port the cluster listens on.
func (c *UDPCluster) Addr() netip.AddrPort { return c.addr }

// MaxFlows is the cap on live flows: max_conns, MaxFlows or the
// descriptor budget, whichever is lowest.
func (c *UDPCluster) MaxFlows() int64 { return c.maxFlows }

// Listen binds the VIP and port, with IP_FREEBIND so it works on both
// boxes before the VIP exists, and with IP_PKTINFO (IPV6_RECVPKTINFO) so
// each answer leaves from the address its query was sent to. Call it at
// start; Serve then relays.
func (c *UDPCluster) Listen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loops != nil {
		return fmt.Errorf("cluster %s: already listening on %s", c.name, c.addr)
	}
	loops, bound, err := c.listen()
	if err != nil {
		return fmt.Errorf("cluster %s: %w", c.name, err)
	}
	c.loops, c.bound = loops, bound
	return nil
}

// ListenAddr is the bound address (useful after binding port 0 in
// tests), or the zero AddrPort before Listen.
func (c *UDPCluster) ListenAddr() netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bound
}

// Serve relays datagrams until ctx ends, then ends every flow (releasing
// its server), closes the sockets and returns nil. It may be called once,
// after Listen.
func (c *UDPCluster) Serve(ctx context.Context) error {
	c.mu.Lock()
	loops, served := c.loops, c.served
	c.served = true
	c.mu.Unlock()
	switch {
	case loops == nil:
		return fmt.Errorf("cluster %s: Serve before Listen", c.name)
	case served:
		return fmt.Errorf("cluster %s: Serve called twice", c.name)
	}
	return c.serve(ctx, loops)
}

// SetActive switches relaying on (MASTER) or off. While off, every client
// datagram is dropped and counted as "standby"; answers to queries
// already relayed still go back, and flows end after a second idle
// (found by the next sweep, up to a second later).
func (c *UDPCluster) SetActive(on bool) { c.serving.Store(on) }

// Active reports whether the cluster relays (SetActive).
func (c *UDPCluster) Active() bool { return c.serving.Load() }

// Drain waits until no flow is live or ctx ends. Flows have no end of
// their own: they end when idle, within about two seconds once
// SetActive(false).
func (c *UDPCluster) Drain(ctx context.Context) { c.flows.wait(ctx) }

// UDPStats is a snapshot of a UDP cluster's counters.
type UDPStats struct {
	Name    string
	Addr    netip.AddrPort
	Serving bool
	// Flows is the live flows (what max_conns limits); FlowsTotal counts
	// every flow started, including a flow moved to another server.
	Flows      int64
	FlowsTotal uint64
	MaxFlows   int64
	// Parked is the live flows whose socket is parked in io_uring (no
	// descriptor); ParkedTotal counts the flows ever parked.
	Parked      int64
	ParkedTotal uint64
	// DatagramsIn and BytesIn are client → server, relayed; DatagramsOut
	// and BytesOut server → client, relayed.
	DatagramsIn, DatagramsOut uint64
	BytesIn, BytesOut         uint64
	// Drops counts dropped datagrams by reason; every reason is present.
	Drops map[string]uint64
	// Panics counts recovered panics in the loops.
	Panics uint64
	// Retries counts requests re-sent to another server (retry_timeout);
	// Unanswered the requests a server left unanswered in time (timed
	// with retry_timeout or passive); Untimed those sent while the
	// loop's ring of timed requests was full (never retried). A late
	// answer from the server a retry left is a drop, DropLateAnswer.
	Retries, Unanswered, Untimed uint64
	// Servers' Active is their live flows, Total the flows they were given.
	Servers []ServerStats
}

// Stats returns a snapshot of the counters.
func (c *UDPCluster) Stats() UDPStats {
	st := UDPStats{
		Name:     c.name,
		Addr:     c.addr,
		Serving:  c.serving.Load(),
		Flows:    c.flows.load(),
		MaxFlows: c.maxFlows,
		Parked:   c.parked.Load(),
		Drops:    make(map[string]uint64, numUDPReasons),
		Panics:   c.panics.Load(),
	}
	c.mu.Lock()
	loops := c.loops
	c.mu.Unlock()
	var drops [numUDPReasons]uint64
	for _, l := range loops {
		k := &l.counters
		st.FlowsTotal += k.flowsTotal.Load()
		st.ParkedTotal += k.parkedTotal.Load()
		st.DatagramsIn += k.dgramsIn.Load()
		st.DatagramsOut += k.dgramsOut.Load()
		st.BytesIn += k.bytesIn.Load()
		st.BytesOut += k.bytesOut.Load()
		st.Retries += k.retries.Load()
		st.Unanswered += k.unanswered.Load()
		st.Untimed += k.untimed.Load()
		for r := range numUDPReasons {
			drops[r] += k.drops[r].Load()
		}
	}
	for r := range numUDPReasons {
		st.Drops[r.String()] = drops[r]
	}
	for _, s := range c.pool.Servers() {
		st.Servers = append(st.Servers, ServerStats{
			Name: s.Name, Addr: s.Addr, Healthy: s.Healthy(), Admin: s.Admin().String(),
			Active: s.Active(), Total: s.Total(), Failures: s.Failures(),
		})
	}
	return st
}

// udpCounters are one loop's counters: written by the loop alone, read by
// Stats; padded so two loops never share a cache line.
type udpCounters struct {
	flowsTotal, parkedTotal, dgramsIn, dgramsOut, bytesIn, bytesOut atomic.Uint64
	retries, unanswered, untimed                                    atomic.Uint64
	drops                                                           [numUDPReasons]atomic.Uint64
	_                                                               [64]byte
}

// drop counts a dropped datagram and logs it at a limited rate.
func (c *UDPCluster) drop(k *udpCounters, r udpReason, client netip.AddrPort, err error) {
	k.drops[r].Add(1)
	if r == udpStandby {
		return // expected on the backup: not worth a line
	}
	if ok, n := c.dropLog[r].allow(time.Now()); ok {
		args := []any{"reason", r.String(), "client", client, "suppressed", n}
		if err != nil {
			args = append(args, "err", err)
		}
		c.log.Warn("datagram dropped", args...)
	}
}

// pick returns the client's sticky server while it is available, else
// the balancer's choice (never exclude); nil when none is available.
func (c *UDPCluster) pick(client netip.Addr, exclude *Server) *Server {
	if c.opts.Sticky != nil {
		if name, ok := c.opts.Sticky.Lookup(client); ok {
			if s := c.pool.Server(name); s != nil && s != exclude && s.Available() {
				return s
			}
		}
	}
	return c.pool.Pick(client, exclude)
}

// serverUp reports whether a flow may stay on s: healthy and not
// disabled (a draining server keeps its flows, like TCP connections).
func serverUp(s *Server) bool { return s.Healthy() && s.Admin() != Disabled }

// clock is the loops' time: nanoseconds since the cluster was built.
func (c *UDPCluster) clock() int64 { return int64(time.Since(c.epoch)) }

// errUDPUnsupported is Listen's error where there is no UDP dataplane.
var errUDPUnsupported = errors.New("UDP clusters need Linux (IP_PKTINFO, epoll)")
