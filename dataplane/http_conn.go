package dataplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
)

// clientConn is an accepted client connection of an HTTPCluster: it
// frees the connection's place (max_conns, Drain) once, when closed
// (by the server, or by the proxy after an upgrade), and watches the
// requests' framing for smuggling attempts.
//
// On a TLS cluster, Conn is a *tls.Conn that clientConn hides from
// net/http: the server sees a plain connection whose bytes are already
// decrypted, so the framing watch sees them too (net/http reads a
// *tls.Conn itself, out of reach). The handshake runs on the first Read,
// under the header timeout net/http sets; a client that negotiated h2
// by ALPN sends the HTTP/2 preface, which the server (Protocols:
// UnencryptedHTTP2) serves as HTTP/2. The request's TLS state is then
// not in Request.TLS; the proxy reads secure instead.
type clientConn struct {
	net.Conn // the *net.TCPConn, or a *tls.Conn over it
	c        *HTTPCluster
	from     netip.AddrPort
	secure   bool
	// preface counts the bytes of the HTTP/2 preface checked on a TLS
	// connection that chose h2 (-1: nothing to check, or done).
	preface int
	once    sync.Once
	sniff   framing
	// smuggled is set once a request carried both Content-Length and
	// Transfer-Encoding: the handler answers 400 and closes.
	smuggled atomic.Bool
}

// newClientConn wraps conn, in TLS when tlsConf is not nil.
func newClientConn(conn *net.TCPConn, c *HTTPCluster, from netip.AddrPort, tlsConf *tls.Config) *clientConn {
	cc := &clientConn{Conn: conn, c: c, from: from}
	if tlsConf != nil {
		cc.Conn, cc.secure = tls.Server(conn, tlsConf), true
	} else {
		cc.preface = -1
	}
	return cc
}

// Read reads from the client and feeds the framing watcher, which sees
// every request's headers before net/http parses them.
func (cc *clientConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	if cc.preface >= 0 && n > 0 && !cc.checkPreface(p[:n]) {
		cc.Conn.Close()
		return 0, errBadPreface
	}
	if f := &cc.sniff; n > 0 && !f.done {
		if f.feed(p[:n]) {
			cc.smuggled.Store(true)
		}
	}
	return n, err
}

// h2Preface opens every HTTP/2 connection (RFC 9113 §3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

var errBadPreface = errors.New("h2 negotiated, but no HTTP/2 preface")

// checkPreface checks the first bytes of a TLS connection that chose h2
// by ALPN: anything but the HTTP/2 preface ends it (RFC 9113 §3.4), where
// net/http, which sees the connection as plain, would answer in HTTP/1.
func (cc *clientConn) checkPreface(b []byte) bool {
	if cc.preface == 0 {
		if tc, ok := cc.Conn.(*tls.Conn); !ok || tc.ConnectionState().NegotiatedProtocol != "h2" {
			cc.preface = -1
			return true
		}
	}
	m := min(len(b), len(h2Preface)-cc.preface)
	if string(b[:m]) != h2Preface[cc.preface:cc.preface+m] {
		return false
	}
	if cc.preface += m; cc.preface == len(h2Preface) {
		cc.preface = -1
	}
	return true
}

// netHTTPError is how net/http ends the answer it writes itself to a
// request it cannot parse (400, 431, 501), in one write on the
// connection: the handler's answers never carry it (their headers are
// sorted, with a Date).
var netHTTPError = []byte("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n")

// Write writes to the client, counting the requests net/http refused by
// itself (the handler never saw them).
func (cc *clientConn) Write(p []byte) (int, error) {
	if len(p) > 12 && string(p[:10]) == "HTTP/1.1 4" && bytes.Contains(p, netHTTPError) {
		if string(p[9:12]) == "431" {
			cc.c.stats.headerTooLarge.Add(1)
		} else {
			cc.c.stats.malformed.Add(1)
		}
	}
	return cc.Conn.Write(p)
}

// Close closes the connection and frees its place, once.
func (cc *clientConn) Close() error {
	err := cc.Conn.Close()
	cc.once.Do(func() {
		cc.c.active.Add(-1)
		cc.c.open.done()
	})
	return err
}

type connKey struct{}

// connContext puts the client connection in each request's context.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if cc, ok := c.(*clientConn); ok {
		return context.WithValue(ctx, connKey{}, cc)
	}
	return ctx
}

// connFrom returns the client connection of a request's context, or nil.
func connFrom(ctx context.Context) *clientConn {
	cc, _ := ctx.Value(connKey{}).(*clientConn)
	return cc
}

// framing follows the HTTP/1.1 message framing of a client's byte
// stream, as net/http will parse it, only to find a request that carries
// both Content-Length and Transfer-Encoding (RFC 9112 §6.1: "ought to be
// handled as an error"; net/http instead drops the Content-Length). Once
// it finds one, or meets anything it does not follow (an upgrade, a line
// too long, a bad chunk size), it stops: net/http does the real parsing
// and answers malformed requests itself.
type framing struct {
	state   int
	line    []byte
	started bool // the request line was seen
	cl, te  bool
	chunked bool
	upgrade bool
	left    int64 // body or chunk bytes to skip
	done    bool
}

const (
	fHeaders = iota
	fBody
	fChunkSize
	fChunkData
	fChunkEnd
	fTrailer
	maxFramingLine = 256
)

// feed follows p; it reports true when a request carried both headers.
func (f *framing) feed(p []byte) bool {
	for len(p) > 0 && !f.done {
		switch f.state {
		case fBody, fChunkData:
			n := int64(len(p))
			if n > f.left {
				n = f.left
			}
			f.left -= n
			p = p[n:]
			if f.left == 0 {
				if f.state == fBody {
					f.reset()
				} else {
					f.state = fChunkEnd
				}
			}
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			f.add(p)
			return false
		}
		f.add(p[:i])
		p = p[i+1:]
		line := bytes.TrimSuffix(f.line, []byte{'\r'})
		f.line = f.line[:0]
		if f.done {
			return false
		}
		if f.lineDone(line) {
			f.done = true
			return true
		}
	}
	return false
}

func (f *framing) add(b []byte) {
	if len(f.line)+len(b) > maxFramingLine {
		// Only header names, sizes and short values matter; a long
		// header of another name is fine unless it is one we read.
		b = b[:max(0, maxFramingLine-len(f.line))]
		if f.state != fHeaders && f.state != fTrailer {
			f.done = true
		}
	}
	f.line = append(f.line, b...)
}

func (f *framing) reset() { *f = framing{line: f.line[:0]} }

// lineDone handles one complete line; true: smuggling.
func (f *framing) lineDone(line []byte) bool {
	switch f.state {
	case fHeaders:
		if len(line) == 0 {
			if !f.started {
				return false // leading empty lines are allowed
			}
			return f.headersDone()
		}
		if !f.started {
			if bytes.HasPrefix(line, []byte("PRI * HTTP/2.0")) {
				f.done = true // the HTTP/2 preface: frames follow
				return false
			}
			f.started = true
			f.upgrade = bytes.HasPrefix(line, []byte("CONNECT "))
			return false
		}
		f.header(line)
	case fChunkSize:
		size, _, _ := bytes.Cut(line, []byte{';'})
		n, err := strconv.ParseInt(string(bytes.TrimSpace(size)), 16, 64)
		switch {
		case err != nil || n < 0:
			f.done = true
		case n == 0:
			f.state = fTrailer
		default:
			f.state, f.left = fChunkData, n
		}
	case fChunkEnd:
		f.state = fChunkSize
	case fTrailer:
		if len(line) == 0 {
			f.reset()
		}
	}
	return false
}

func (f *framing) header(line []byte) {
	name, value, ok := bytes.Cut(line, []byte{':'})
	if !ok {
		return
	}
	value = bytes.TrimSpace(value)
	switch {
	case bytes.EqualFold(name, []byte("Content-Length")):
		f.cl = true
		if n, err := strconv.ParseInt(string(value), 10, 64); err == nil && n >= 0 {
			f.left = n
		} else {
			f.done = true
		}
	case bytes.EqualFold(name, []byte("Transfer-Encoding")):
		f.te = true
		f.chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
	case bytes.EqualFold(name, []byte("Upgrade")):
		f.upgrade = true
	}
}

// headersDone ends a request's headers; true: smuggling.
func (f *framing) headersDone() bool {
	switch {
	case f.cl && f.te:
		return true
	case f.upgrade:
		f.done = true // opaque bytes follow, if the upgrade is taken
	case f.chunked:
		f.state = fChunkSize
	case f.left > 0:
		f.state = fBody
	default:
		f.reset()
	}
	return false
}
