package dataplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// HTTPOptions are what an HTTPCluster gets from the node beyond its
// config.
type HTTPOptions struct {
	// Sticky is the source-IP persistence table: the persistence of a
	// source_ip cluster, the fallback of a cookie cluster for a client
	// that sends no valid cookie. nil: none.
	Sticky StickyTable
	// CookieKeys sign (the first) and verify (all) the persistence
	// cookie; see CookieKeys.
	CookieKeys [][]byte
	// AccessLog receives one line per request; nil: none.
	AccessLog io.Writer
}

// HTTPCluster is one `protocol: http` virtual cluster: an HTTP/1.1 and
// (over TLS, by ALPN) HTTP/2 reverse proxy on the VIP and port, built on
// net/http and httputil.ReverseProxy, with keep-alive pools to the
// servers. It serves the same Pool as a TCP cluster (health, admin
// states, weights, algorithms), so status, drain and reload treat it
// alike; the pool's server counters count requests in flight.
type HTTPCluster struct {
	name      string
	addr      netip.AddrPort
	pool      *Pool
	routes    *router
	cfg       config.HTTP
	opts      HTTPOptions
	log       *slog.Logger
	allow     allowList
	trusted   allowList
	maxConns  int64
	certs     *certStore  // nil: plain HTTP
	tlsConf   *tls.Config // certs' config
	cookie    *cookieJar  // nil: no cookie persistence
	sticky    StickyTable
	proxy     *httputil.ReverseProxy
	tr        *http.Transport
	alog      *accessLog
	addrs     map[*Server]string
	byAddr    map[string]*Server // the inverse of addrs, for the dialer
	scheme    string             // to the servers: http, or https (server_tls)
	serverCAs *x509.CertPool     // server_ca_file; nil: the system's roots
	stats     *httpStats

	serving atomic.Bool
	open    inflight     // client connections open, hijacked ones included
	active  atomic.Int64 // client connections (max_conns)
	refused [numReasons]atomic.Uint64
	panics  atomic.Uint64
	dialLog logLimiter

	mu       sync.Mutex
	ln, rdln *net.TCPListener // the cluster's and the redirect's
	srv, rdr *http.Server
}

// NewHTTPCluster builds the http cluster of vc over pool. It loads the
// certificates of vc.TLS; it binds nothing (see Listen).
func NewHTTPCluster(vc config.VirtualCluster, pool *Pool, opts HTTPOptions, logger *slog.Logger) (*HTTPCluster, error) {
	vip, err := netip.ParseAddr(vc.VIP)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: vip %q: %w", vc.Name, vc.VIP, err)
	}
	if vc.Port < 0 || vc.Port > 65535 {
		return nil, fmt.Errorf("cluster %s: port %d out of range 0..65535", vc.Name, vc.Port)
	}
	allow, err := parseAllow(vc.Allow)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", vc.Name, err)
	}
	var hc config.HTTP
	if vc.HTTP != nil {
		hc = *vc.HTTP
	}
	trusted, err := parseAllow(hc.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: trusted_proxies: %w", vc.Name, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &HTTPCluster{
		name: vc.Name, addr: netip.AddrPortFrom(vip.Unmap(), uint16(vc.Port)),
		pool: pool, cfg: hc, opts: opts, log: logger.With("cluster", vc.Name),
		allow: allow, trusted: trusted, maxConns: int64(max(vc.MaxConns, 0)),
		sticky: opts.Sticky, addrs: make(map[*Server]string), byAddr: make(map[string]*Server),
	}
	c.stats = newHTTPStats(pool.Servers())
	for _, s := range pool.Servers() {
		c.addrs[s] = s.Addr.String()
		c.byAddr[c.addrs[s]] = s
	}
	if c.routes, err = newRouter(vc, pool); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", vc.Name, err)
	}
	if vc.TLS != nil {
		if c.certs, err = loadCerts(*vc.TLS); err != nil {
			return nil, fmt.Errorf("cluster %s: %w", vc.Name, err)
		}
		c.tlsConf = c.certs.config()
	}
	if p := vc.Persistence; p != nil && p.Mode == config.PersistenceCookie {
		c.cookie = newCookieJar(*p, pool.Servers(), opts.CookieKeys)
	}
	c.alog = newAccessLog(opts.AccessLog, hc.AccessLogFormat)
	c.scheme = "http"
	if hc.ServerCAFile != "" {
		b, err := os.ReadFile(hc.ServerCAFile)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: server_ca_file: %w", vc.Name, err)
		}
		c.serverCAs = x509.NewCertPool()
		if !c.serverCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("cluster %s: server_ca_file %s: no PEM certificate", vc.Name, hc.ServerCAFile)
		}
	}
	c.tr = c.transport()
	c.proxy = &httputil.ReverseProxy{
		Rewrite:        c.rewrite,
		Transport:      retryTransport{c},
		ModifyResponse: c.modifyResponse,
		ErrorHandler:   c.proxyError,
		BufferPool:     bufferPool{},
		ErrorLog:       log.New(io.Discard, "", 0),
	}
	return c, nil
}

// transport is the keep-alive pool to the servers: HTTP/1.1, no
// compression of its own (gzip is left to the servers), idle connections
// kept per server. Each connect's time feeds the server's EWMA
// (fastest_response).
func (c *HTTPCluster) transport() *http.Transport {
	d := &net.Dialer{Timeout: c.cfg.ConnectTimeout, KeepAlive: -1}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		start := time.Now()
		conn, err := d.DialContext(ctx, network, addr)
		if s := c.byAddr[addr]; s != nil && err == nil {
			s.ObserveConnect(time.Since(start))
		}
		return conn, err
	}
	tr := &http.Transport{
		DialContext:           dial,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: c.cfg.ResponseTimeout,
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     false,
	}
	if c.cfg.ServerTLS {
		c.scheme = "https"
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.serverCAs,
			ServerName: c.cfg.ServerName, InsecureSkipVerify: c.cfg.ServerSkipVerify}
		// No h2 to the servers: HTTP/1.1 keep-alive pools, as documented.
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return tr
}

// Name is the cluster's name.
func (c *HTTPCluster) Name() string { return c.name }

// Listen binds the VIP and port (and the redirect port), with
// IP_FREEBIND like a TCP cluster, so the backup binds before it holds
// the VIP.
func (c *HTTPCluster) Listen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != nil {
		return fmt.Errorf("cluster %s: already listening on %s", c.name, c.addr)
	}
	ln, err := listenTCP(context.Background(), c.addr)
	if err != nil {
		return fmt.Errorf("cluster %s: %w", c.name, err)
	}
	if p := c.cfg.RedirectPort; p != 0 && c.certs != nil {
		rd, err := listenTCP(context.Background(), netip.AddrPortFrom(c.addr.Addr(), uint16(p)))
		if err != nil {
			ln.Close()
			return fmt.Errorf("cluster %s: redirect: %w", c.name, err)
		}
		c.rdln = rd
	}
	c.ln = ln
	return nil
}

// ListenAddr is the bound address, or the zero AddrPort before Listen.
func (c *HTTPCluster) ListenAddr() netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln == nil {
		return netip.AddrPort{}
	}
	return c.ln.Addr().(*net.TCPAddr).AddrPort()
}

// RedirectAddr is the bound redirect address, or the zero AddrPort.
func (c *HTTPCluster) RedirectAddr() netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rdln == nil {
		return netip.AddrPort{}
	}
	return c.rdln.Addr().(*net.TCPAddr).AddrPort()
}

// server builds the cluster's http.Server.
func (c *HTTPCluster) server(h http.Handler) *http.Server {
	s := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.cfg.HeaderTimeout,
		IdleTimeout:       c.cfg.IdleTimeout,
		MaxHeaderBytes:    c.cfg.MaxHeaderBytes,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnContext:       connContext,
	}
	if c.tlsConf != nil && h == http.Handler(c) {
		// TLS is the listener's (clientConn): HTTP/2 arrives as the
		// preface on a connection net/http sees unencrypted.
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		s.Protocols = &p
	}
	return s
}

// Serve serves requests until ctx ends, then closes the listeners and
// returns nil; open connections are left to Drain.
func (c *HTTPCluster) Serve(ctx context.Context) error {
	c.mu.Lock()
	ln, rdln := c.ln, c.rdln
	if ln == nil {
		c.mu.Unlock()
		return fmt.Errorf("cluster %s: Serve before Listen", c.name)
	}
	c.srv = c.server(c)
	srv := c.srv
	var rdr *http.Server
	if rdln != nil {
		c.rdr = c.server(http.HandlerFunc(c.redirect))
		rdr = c.rdr
	}
	c.mu.Unlock()
	hl := &httpListener{c: c, ln: ln, tls: c.tlsConf}
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		if rdln != nil {
			rdln.Close()
		}
	})
	defer stop()
	var wg sync.WaitGroup
	if rdr != nil {
		wg.Go(func() {
			err := rdr.Serve(&httpListener{c: c, ln: rdln})
			if ctx.Err() == nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				c.log.Error("redirect listener stopped", "err", err)
			}
		})
	}
	err := srv.Serve(hl)
	ln.Close()
	if rdln != nil {
		rdln.Close()
	}
	wg.Wait()
	if ctx.Err() != nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("cluster %s: %w", c.name, err)
}

// SetActive switches serving on (MASTER) or off: while off, new
// connections are reset at once, counted as refused "standby".
func (c *HTTPCluster) SetActive(on bool) { c.serving.Store(on) }

// Active reports whether the cluster serves.
func (c *HTTPCluster) Active() bool { return c.serving.Load() }

// Drain closes idle keep-alive connections, lets the requests in flight
// (and upgraded connections) finish, and returns when none is left or
// ctx ends; then it closes what is left.
func (c *HTTPCluster) Drain(ctx context.Context) {
	c.mu.Lock()
	srvs := []*http.Server{c.srv, c.rdr}
	c.mu.Unlock()
	for _, s := range srvs {
		if s == nil {
			continue
		}
		if err := s.Shutdown(ctx); err != nil {
			s.Close()
		}
	}
	c.open.wait(ctx)
	c.tr.CloseIdleConnections()
}

// ReloadCertificates re-reads the certificate files and reports whether
// any changed; the running certificates stay when one cannot be loaded.
func (c *HTTPCluster) ReloadCertificates() (changed bool, err error) {
	if c.certs == nil {
		return false, nil
	}
	return c.certs.reload()
}

// redirect answers a plain-HTTP request with a 308 to the same URL over
// https on the cluster's port.
func (c *HTTPCluster) redirect(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "" {
		host = c.addr.Addr().String()
	}
	if p := c.addr.Port(); p != 443 {
		host = net.JoinHostPort(host, fmt.Sprint(p))
	}
	w.Header().Set("Connection", "close")
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
}

// httpListener applies the checks of a new connection: the cluster
// serves (MASTER), the client is on the allow list, the cluster is under
// max_conns. A refused connection is reset at once and counted.
type httpListener struct {
	c   *HTTPCluster
	ln  *net.TCPListener
	tls *tls.Config // nil: plain HTTP (the redirect's, a cluster without tls)
}

func (l *httpListener) Accept() (net.Conn, error) {
	c := l.c
	for {
		conn, err := l.ln.AcceptTCP()
		if err != nil {
			return nil, err
		}
		var from netip.AddrPort
		if a, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
			from = a.AddrPort()
		}
		why := reason(-1)
		switch {
		case !c.serving.Load():
			why = reasonStandby
		case !c.allow.permits(from.Addr()):
			why = reasonAllow
		default:
			if n := c.active.Add(1); c.maxConns > 0 && n > c.maxConns {
				c.active.Add(-1)
				why = reasonMaxConns
			}
		}
		if why >= 0 {
			c.refused[why].Add(1)
			conn.SetLinger(0)
			conn.Close()
			continue
		}
		c.open.add()
		return newClientConn(conn, c, from, l.tls), nil
	}
}

func (l *httpListener) Close() error   { return l.ln.Close() }
func (l *httpListener) Addr() net.Addr { return l.ln.Addr() }
