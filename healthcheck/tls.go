package healthcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// tlsOptions is what the checks that speak TLS share: the name the
// certificate must be valid for, the roots it must chain to and how
// long before its expiry to warn.
type tlsOptions struct {
	serverName string         // "" = the server's IP address
	roots      *x509.CertPool // nil = the system's roots
	warnWithin time.Duration  // 0 = never warn
}

// newTLSOptions reads the TLS keys of hc; defaultName is used when
// server_name is not set ("" for the server's IP address).
func newTLSOptions(hc config.HealthCheck, defaultName string) (*tlsOptions, error) {
	roots, err := hc.RootCAs()
	if err != nil {
		return nil, fmt.Errorf("health_check: ca_file: %w", err)
	}
	if roots == nil {
		// Load the system's roots now (Go loads them once, lazily), not
		// in the first probe, whose timeout it could eat.
		_, _ = x509.SystemCertPool()
	}
	name := hc.ServerName
	if name == "" {
		name = defaultName
	}
	return &tlsOptions{
		serverName: name,
		roots:      roots,
		warnWithin: time.Duration(hc.CertWarnDays) * 24 * time.Hour,
	}, nil
}

// config returns the client config for one server. The certificate is
// verified as any client would: chain, validity dates and name.
func (o *tlsOptions) config(addr netip.AddrPort) *tls.Config {
	name := o.serverName
	if name == "" {
		name = addr.Addr().Unmap().WithZone("").String()
	}
	return &tls.Config{ServerName: name, RootCAs: o.roots}
}

// handshake runs a TLS client handshake over conn, bounded by ctx.
func (o *tlsOptions) handshake(ctx context.Context, conn net.Conn, addr netip.AddrPort) (*tls.Conn, error) {
	tc := tls.Client(conn, o.config(addr))
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tc, nil
}

// certResult records in res when the server's certificates expire and,
// when that is within the warning window, a warning; it appends the
// days left to a passing Detail.
func (o *tlsOptions) certResult(res Result, state tls.ConnectionState) Result {
	var notAfter time.Time
	for _, c := range state.PeerCertificates {
		if notAfter.IsZero() || c.NotAfter.Before(notAfter) {
			notAfter = c.NotAfter
		}
	}
	if notAfter.IsZero() {
		return res
	}
	res.CertNotAfter = notAfter
	left := notAfter.Sub(res.At)
	if res.OK {
		res.Detail += ", certificate expires in " + daysLeft(left)
	}
	if o.warnWithin > 0 && left < o.warnWithin {
		w := fmt.Sprintf("certificate expires in %s (%s)", daysLeft(left), notAfter.UTC().Format("2006-01-02 15:04 MST"))
		if res.Warning != "" {
			w = res.Warning + "; " + w
		}
		res.Warning = w
	}
	return res
}

// daysLeft says how long a certificate has left, rounded to days: "89
// days", "1 day"; in hours under a day, "17h".
func daysLeft(d time.Duration) string {
	if d < day {
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	if days := roundDays(d); days != 1 {
		return fmt.Sprintf("%d days", days)
	}
	return "1 day"
}

const day = 24 * time.Hour

// roundDays rounds d to whole days: a certificate issued "for 5 days"
// a moment ago still has 5.
func roundDays(d time.Duration) int {
	return int(math.Round(float64(d) / float64(day)))
}

// describeTLS makes a handshake error short: "TLS: certificate is valid
// for a.example, not 127.0.0.1", "TLS: certificate signed by unknown
// authority", "TLS: certificate has expired or is not yet valid: …",
// "TLS: timeout after 500.1ms".
func describeTLS(ctx context.Context, start time.Time, err error) string {
	if s, ok := certError(err); ok {
		return s
	}
	return "TLS: " + describe(ctx, start, err)
}

// certError describes err when it is a rejected certificate.
func certError(err error) (string, bool) {
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) {
		return "TLS: " + strings.TrimPrefix(verr.Err.Error(), "x509: "), true
	}
	return "", false
}

// CertDaysLeft returns how many days, rounded, are left at now before
// the certificate seen by the check expires (negative once it has), or
// nil when the check saw none.
func (r Result) CertDaysLeft(now time.Time) *int {
	if r.CertNotAfter.IsZero() {
		return nil
	}
	d := roundDays(r.CertNotAfter.Sub(now))
	return &d
}

// dialProbe opens a probe's connection to addr: TCP, with ctx's deadline
// on the socket (it bounds every later step, TLS included), then the TLS
// handshake when implicit. done closes everything; on failure the probe's
// Result is returned instead (done is nil).
func dialProbe(ctx context.Context, addr netip.AddrPort, start time.Time, implicit bool, o *tlsOptions) (conn net.Conn, done func(), res *Result) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		r := failErr(ctx, start, err)
		return nil, nil, &r
	}
	stop := withDeadline(ctx, raw)
	done = func() { stop(); raw.Close() }
	conn = raw
	if implicit {
		tc, err := o.handshake(ctx, raw, addr)
		if err != nil {
			done()
			r := fail(start, "%s", describeTLS(ctx, start, err))
			return nil, nil, &r
		}
		conn = tc
	}
	return conn, done, nil
}
