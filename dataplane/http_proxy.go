package dataplane

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// reqState is one request's way through the proxy, in its context: the
// client, the pool its rule chose, the server it holds (acquired; a retry
// swaps it) and the server its cookie named.
type reqState struct {
	client    netip.AddrPort
	secure    bool // the request came over TLS
	pool      *Pool
	srv       *Server
	cookieSrv *Server
	status    int // the server's status, for an upgrade the writer never sees
}

type stateKey struct{}

func stateFrom(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// ServeHTTP proxies one request: smuggling check, body limit, rule,
// server (cookie, then source IP, then the balancer), then
// httputil.ReverseProxy with the retrying transport; it counts and logs
// the request when it ends.
func (c *HTTPCluster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &respWriter{ResponseWriter: w}
	st := &reqState{}
	if cc := connFrom(r.Context()); cc != nil {
		st.client, st.secure = cc.from, cc.secure
		if cc.smuggled.Load() {
			c.stats.smuggling.Add(1)
			w.Header().Set("Connection", "close")
			http.Error(rw, "Bad Request: both Content-Length and Transfer-Encoding", http.StatusBadRequest)
			c.done(r, rw, st, start)
			return
		}
	} else if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		st.client = ap
	}
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				c.panics.Add(1)
				c.log.Error("panic in request handling", "client", st.client, "panic", p, "stack", string(debug.Stack()))
			}
			c.done(r, rw, st, start)
			panic(http.ErrAbortHandler) // net/http closes the connection quietly
		}
	}()
	if max := c.cfg.MaxBodyBytes; max > 0 && r.ContentLength != 0 {
		if r.ContentLength > max {
			c.stats.tooLarge.Add(1)
			w.Header().Set("Connection", "close")
			http.Error(rw, "Request Entity Too Large", http.StatusRequestEntityTooLarge)
			c.done(r, rw, st, start)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, max)
	}
	if d := c.cfg.ReadTimeout; d > 0 && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		// The body's read deadline, cleared at its end: a deadline left
		// would cancel the request while the server is still answering.
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(start.Add(d)) == nil {
			r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		}
	}
	st.pool = c.routes.pick(r)
	if st.srv = c.pickServer(r, st); st.srv == nil {
		c.stats.noServer.Add(1)
		http.Error(rw, "Service Unavailable", http.StatusServiceUnavailable)
		c.done(r, rw, st, start)
		return
	}
	c.proxy.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
	c.done(r, rw, st, start)
}

// pickServer chooses and acquires a server of st.pool: the one the
// client's cookie names while it is available, else the client's
// source-IP entry, else the balancer's choice (its second when the first
// is at max_conns). nil: none could take the request.
func (c *HTTPCluster) pickServer(r *http.Request, st *reqState) *Server {
	usable := func(s *Server) bool {
		return s != nil && st.pool.Server(s.Name) == s && s.Available() && s.TryAcquire()
	}
	if c.cookie != nil {
		if s := c.cookie.server(r); s != nil {
			st.cookieSrv = s
			if usable(s) {
				return s
			}
		}
	}
	client := st.client.Addr().Unmap()
	if c.sticky != nil && st.cookieSrv == nil {
		if name, ok := c.sticky.Lookup(client); ok {
			if s := st.pool.Server(name); usable(s) {
				return s
			}
		}
	}
	s := st.pool.Pick(client, nil)
	if s == nil {
		return nil
	}
	if s.TryAcquire() {
		return s
	}
	if s = st.pool.Pick(client, s); s != nil && s.TryAcquire() {
		return s
	}
	return nil
}

// done releases the request's server, counts the request and logs it.
func (c *HTTPCluster) done(r *http.Request, rw *respWriter, st *reqState, start time.Time) {
	d := time.Since(start)
	status := rw.status
	if status == 0 {
		status = st.status
	}
	class := statusClass(status)
	c.stats.all.observe(class, d)
	name := ""
	if s := st.srv; s != nil {
		s.Release()
		c.stats.servers[s].observe(class, d)
		name = s.Name
		st.srv = nil
	}
	if c.alog != nil {
		c.alog.write(r, &logEntry{Time: start, Cluster: c.name, Client: st.client.Addr().String(),
			Status: status, Bytes: rw.bytes, Server: name, Duration: float64(d.Microseconds()) / 1000})
	}
}

// rewrite points the outgoing request at the chosen server, keeps the
// client's Host, and sets the client's address headers.
func (c *HTTPCluster) rewrite(pr *httputil.ProxyRequest) {
	st := stateFrom(pr.In.Context())
	pr.Out.URL.Scheme = c.scheme
	pr.Out.URL.Host = c.addrs[st.srv]
	pr.Out.Host = pr.In.Host
	c.forwarded(pr, st)
}

// forwarded sets X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host
// and Forwarded (RFC 7239). The client's are appended to when it is a
// trusted proxy and dropped otherwise (ReverseProxy has removed the
// X-Forwarded ones from Out already).
func (c *HTTPCluster) forwarded(pr *httputil.ProxyRequest, st *reqState) {
	in, out := pr.In.Header, pr.Out.Header
	ip := st.client.Addr().Unmap()
	proto := "http"
	if st.secure || pr.In.TLS != nil {
		proto = "https"
	}
	trusted := len(c.trusted) > 0 && c.trusted.permits(ip)
	xff, fwd := ip.String(), forwardedElement(ip, proto, pr.In.Host)
	if trusted {
		if prior := in.Values("X-Forwarded-For"); len(prior) > 0 {
			xff = strings.Join(prior, ", ") + ", " + xff
		}
		if prior := in.Values("Forwarded"); len(prior) > 0 {
			fwd = strings.Join(prior, ", ") + ", " + fwd
		}
		if p := in.Get("X-Forwarded-Proto"); p != "" {
			proto = p
		}
	}
	out.Set("X-Forwarded-For", xff)
	out.Set("Forwarded", fwd)
	out.Set("X-Forwarded-Proto", proto)
	host := pr.In.Host
	if h := in.Get("X-Forwarded-Host"); trusted && h != "" {
		host = h
	}
	out.Set("X-Forwarded-Host", host)
}

// forwardedElement is one Forwarded element: for, proto, host.
func forwardedElement(ip netip.Addr, proto, host string) string {
	var b strings.Builder
	b.WriteString("for=")
	if ip.Is6() {
		b.WriteString(`"[` + ip.String() + `]"`)
	} else {
		b.WriteString(ip.String())
	}
	b.WriteString(";proto=" + proto)
	if host != "" && !strings.ContainsAny(host, "\"\\") {
		b.WriteString(`;host="` + host + `"`)
	}
	return b.String()
}

// modifyResponse sets the persistence cookie when the client's does not
// name the server that answered, and records the source-IP entry of a
// client without a cookie.
func (c *HTTPCluster) modifyResponse(resp *http.Response) error {
	st := stateFrom(resp.Request.Context())
	if st == nil || st.srv == nil {
		return nil
	}
	st.status = resp.StatusCode
	if resp.StatusCode >= 500 {
		st.srv.trafficFailed(FailServerError)
	} else {
		st.srv.trafficOK()
	}
	if c.cookie != nil && st.cookieSrv != st.srv {
		resp.Header.Add("Set-Cookie", c.cookie.cookie(st.srv))
	}
	if c.sticky != nil && st.cookieSrv == nil {
		c.sticky.Store(st.client.Addr().Unmap(), st.srv.Name)
	}
	return nil
}

// proxyError answers a request the server did not: 413 for a body over
// max_body_bytes, 504 for a server too slow, nothing for a client that
// left, 502 otherwise.
func (c *HTTPCluster) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var tooBig *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &tooBig):
		c.stats.tooLarge.Add(1)
		w.Header().Set("Connection", "close")
		http.Error(w, "Request Entity Too Large", http.StatusRequestEntityTooLarge)
		return
	case r.Context().Err() != nil:
		return // the client is gone
	case errors.As(err, &ne) && ne.Timeout():
		c.stats.timeouts.Add(1)
		http.Error(w, "Gateway Timeout", http.StatusGatewayTimeout)
	default:
		c.stats.badGateway.Add(1)
		http.Error(w, "Bad Gateway", http.StatusBadGateway)
	}
	server := ""
	if st := stateFrom(r.Context()); st != nil && st.srv != nil {
		server = st.srv.Name
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" { // a failed connect was reported already
			st.srv.trafficFailed(FailUnanswered)
		}
	}
	c.log.Debug("request to server failed", "server", server, "err", err)
}

// FailServerError names the answers of class 5xx for passive health
// (see passive.go): a server that answers them is failing its clients.
const FailServerError = "5xx answers"

// retryTransport sends a request to its server over the keep-alive pool
// and, when the connect fails, sends an idempotent request without a
// body once more, to another server of its pool.
type retryTransport struct{ c *HTTPCluster }

func (t retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := t.c
	resp, err := c.tr.RoundTrip(req)
	var op *net.OpError
	if err == nil || !errors.As(err, &op) || op.Op != "dial" {
		return resp, err
	}
	st := stateFrom(req.Context())
	if st == nil || st.srv == nil {
		return resp, err
	}
	st.srv.ConnectFailed()
	st.srv.trafficFailed(connectFailure(err))
	if ok, n := c.dialLog.allow(time.Now()); ok {
		c.log.Warn("connect to server failed", "server", st.srv.Name, "err", err, "suppressed", n)
	}
	if !idempotent(req) {
		return resp, err
	}
	next := st.pool.Pick(st.client.Addr().Unmap(), st.srv)
	if next == nil || !next.TryAcquire() {
		return resp, err
	}
	st.srv.Release()
	st.srv = next
	c.stats.retries.Add(1)
	again := req.Clone(req.Context())
	again.URL.Host = c.addrs[next]
	return c.tr.RoundTrip(again)
}

// idempotent reports whether req may be sent again: an idempotent
// method and no body (a body may have been consumed).
func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return req.Body == nil || req.Body == http.NoBody
	}
	return false
}

// respWriter notes the status and the body bytes sent; Unwrap lets
// http.ResponseController reach Flush and Hijack.
type respWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *respWriter) WriteHeader(code int) {
	if w.status == 0 || w.status < 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// deadlineBody clears the request's read deadline at the end of its body.
type deadlineBody struct {
	io.ReadCloser
	rc *http.ResponseController
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// bufferPool lends ReverseProxy its copy buffers.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }
