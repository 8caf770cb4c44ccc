package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-lb/tandem/internal/backoff"
	"github.com/tandem-lb/tandem/pkg/config"
)

// Defaults of Options.
const (
	DefaultConnectTimeout = 3 * time.Second
	DefaultIdleTimeout    = 5 * time.Minute
)

// StickyTable keeps a client on one server (persistence). It must be safe
// for concurrent use; Lookup is on every connection's path.
type StickyTable interface {
	// Lookup returns the server the client was last sent to, if known.
	Lookup(client netip.Addr) (server string, ok bool)
	// Store records (or refreshes) where the client was sent.
	Store(client netip.Addr, server string)
}

// Options tune a TCPCluster. Zero durations take the defaults.
type Options struct {
	// ConnectTimeout bounds a connect to a server [3s]. On the fast path
	// (an EpollEngine) the engine's idle sweep applies it, so a connect
	// may take up to a sweep (a second) longer.
	ConnectTimeout time.Duration
	// IdleTimeout closes a connection that moved nothing for this long
	// [5m]; negative disables it.
	IdleTimeout time.Duration
	// Sticky, if not nil, is consulted before the balancer: a client goes
	// back to its server while that server is available.
	Sticky StickyTable
}

// TCPCluster is one `protocol: tcp` virtual cluster: a listener on the
// VIP and port that spreads accepted connections over a pool, or refuses
// them while the node is not MASTER.
type TCPCluster struct {
	name     string
	addr     netip.AddrPort
	pool     *Pool
	eng      Engine
	opts     Options
	log      *slog.Logger
	allow    allowList
	maxConns int64
	dialer   net.Dialer
	addrs    map[*Server]string // dial strings, made once

	serving atomic.Bool  // SetActive
	open    inflight     // accepted and not yet finished, and their goroutines (Drain)
	active  atomic.Int64 // past the checks: connecting or proxied (max_conns)
	total   atomic.Uint64
	bytesIn atomic.Uint64
	bytesOu atomic.Uint64
	panics  atomic.Uint64
	refused [numReasons]atomic.Uint64
	// refuseLog and dialLog rate-limit log lines per reason.
	refuseLog [numReasons]logLimiter
	dialLog   logLimiter

	mu sync.Mutex
	ln *net.TCPListener

	// fast: Serve takes the fast accept path (accept_fast_linux.go), on when
	// the engine is an EpollEngine.
	fast bool

	// testHook, if set, runs at the start of each accepted connection's
	// handling (tests inject panics with it); client is nil on the fast
	// path.
	testHook func(client *net.TCPConn)
}

// NewTCPCluster builds the cluster of vc over pool, moving bytes with eng.
// It checks vc's address and allow list; it binds nothing (see Listen).
func NewTCPCluster(vc config.VirtualCluster, pool *Pool, eng Engine, opts Options, log *slog.Logger) (*TCPCluster, error) {
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
	if pool == nil || eng == nil {
		return nil, fmt.Errorf("cluster %s: nil pool or engine", vc.Name)
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &TCPCluster{
		name:     vc.Name,
		addr:     netip.AddrPortFrom(vip.Unmap(), uint16(vc.Port)),
		pool:     pool,
		eng:      eng,
		opts:     opts,
		log:      log.With("cluster", vc.Name),
		allow:    allow,
		maxConns: int64(max(vc.MaxConns, 0)),
		// Servers get no keep-alive: the idle timeout ends dead ones.
		dialer: net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: -1},
		fast:   fastCapable(eng),
	}
	c.addrs = make(map[*Server]string, len(pool.Servers()))
	for _, s := range pool.Servers() {
		c.addrs[s] = s.Addr.String()
	}
	return c, nil
}

// Name is the cluster's name.
func (c *TCPCluster) Name() string { return c.name }

// Addr is the VIP and port the cluster listens on.
func (c *TCPCluster) Addr() netip.AddrPort { return c.addr }

// Listen binds the VIP and port. Call it at start on both boxes, before
// the VIP exists: the socket is bound with IP_FREEBIND.
func (c *TCPCluster) Listen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != nil {
		return fmt.Errorf("cluster %s: already listening on %s", c.name, c.addr)
	}
	ln, err := listenTCP(context.Background(), c.addr)
	if err != nil {
		return fmt.Errorf("cluster %s: %w", c.name, err)
	}
	c.ln = ln
	return nil
}

// ListenAddr is the bound address (useful after binding port 0 in tests),
// or the zero AddrPort before Listen.
func (c *TCPCluster) ListenAddr() netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln == nil {
		return netip.AddrPort{}
	}
	return c.ln.Addr().(*net.TCPAddr).AddrPort()
}

// Serve accepts connections until ctx ends, then closes the listener and
// returns nil. Connections in flight are left to finish; Drain waits for
// them. Accept errors such as running out of descriptors are logged (at a
// limited rate) and retried after a short, growing pause.
func (c *TCPCluster) Serve(ctx context.Context) error {
	c.mu.Lock()
	ln := c.ln
	c.mu.Unlock()
	if ln == nil {
		return fmt.Errorf("cluster %s: Serve before Listen", c.name)
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	if c.fast {
		if ok, err := c.serveFast(ctx, ln); ok {
			return err
		}
	}
	retry := acceptBackoff()
	var errLog logLimiter
	for {
		conn, err := ln.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !c.acceptFailed(ctx, &retry, &errLog, err) {
				return nil
			}
			continue
		}
		retry.Reset()
		c.open.Go(func() { c.handle(conn) })
	}
}

// acceptBackoff paces the retries of a failing accept (out of
// descriptors, say): 5ms, doubling to a second.
func acceptBackoff() backoff.Backoff {
	return backoff.Backoff{Min: 5 * time.Millisecond, Max: time.Second}
}

// acceptFailed logs a failed accept (at a limited rate) and waits before
// the retry; false when ctx ended meanwhile. Both accept paths use it.
func (c *TCPCluster) acceptFailed(ctx context.Context, retry *backoff.Backoff, errLog *logLimiter, err error) bool {
	pause := retry.Next()
	if ok, n := errLog.allow(time.Now()); ok {
		c.log.Warn("accept failed", "err", err, "retry_in", pause, "suppressed", n)
	}
	return backoff.Sleep(ctx, pause)
}

// SetActive switches serving on (MASTER) or off: while off, connections
// that arrive are accepted and reset at once, counted as refused
// "standby". Connections already proxied are not touched.
func (c *TCPCluster) SetActive(on bool) { c.serving.Store(on) }

// Active reports whether the cluster serves (SetActive).
func (c *TCPCluster) Active() bool { return c.serving.Load() }

// Drain waits until no connection is open, nor any goroutine handling
// one, or ctx ends.
func (c *TCPCluster) Drain(ctx context.Context) { c.open.wait(ctx) }

// ClusterStats is a snapshot of a cluster's counters.
type ClusterStats struct {
	Name string
	Addr netip.AddrPort
	// Serving is SetActive's state.
	Serving bool
	// Active is the connections being connected or proxied now (what
	// max_conns limits); Total counts those handed to a server.
	Active int64
	Total  uint64
	// Refused counts refused connections by reason; every reason is present.
	Refused map[string]uint64
	// Panics counts recovered panics in connection handling.
	Panics uint64
	// BytesIn is client → server, BytesOut server → client, of finished
	// connections.
	BytesIn, BytesOut uint64
	Servers           []ServerStats
}

// ServerStats is a snapshot of one server's counters.
type ServerStats struct {
	Name    string
	Addr    netip.AddrPort
	Healthy bool
	Admin   string
	// Active and Total count connections (Total includes failed connects,
	// which Failures counts).
	Active      int64
	Total       uint64
	Failures    uint64
	ConnectTime time.Duration
}

// Stats returns a snapshot of the counters.
func (c *TCPCluster) Stats() ClusterStats {
	st := ClusterStats{
		Name:     c.name,
		Addr:     c.addr,
		Serving:  c.serving.Load(),
		Active:   c.active.Load(),
		Total:    c.total.Load(),
		Refused:  make(map[string]uint64, numReasons),
		Panics:   c.panics.Load(),
		BytesIn:  c.bytesIn.Load(),
		BytesOut: c.bytesOu.Load(),
	}
	for r := range numReasons {
		st.Refused[r.String()] = c.refused[r].Load()
	}
	for _, s := range c.pool.Servers() {
		st.Servers = append(st.Servers, ServerStats{
			Name: s.Name, Addr: s.Addr, Healthy: s.Healthy(), Admin: s.Admin().String(),
			Active: s.Active(), Total: s.Total(), Failures: s.Failures(), ConnectTime: s.ConnectTime(),
		})
	}
	return st
}
