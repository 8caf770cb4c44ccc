// Package healthcheck probes the servers of a cluster and tells its owner
// when one comes up or goes down.
//
// A Checker probes one server once; there is one small type per protocol,
// each in its own file, built from the config by New. A Monitor runs a
// checker against every server of a cluster on its own schedule and folds
// the results through RiseFall, so that only changes of verdict reach the
// consumer. The package knows nothing of the failover election or the
// dataplane: the composition root wires its Changes to them.
package healthcheck

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// Result is one probe's outcome.
type Result struct {
	// OK says whether the server passed.
	OK bool
	// Latency is how long the probe took, pass or fail.
	Latency time.Duration
	// Detail is a short human explanation: "HTTP 200 in 1.2ms",
	// "connect: connection refused", "banner did not match ^220".
	Detail string
	// At is when the probe started.
	At time.Time
	// Warning is something to act on though the probe may have passed:
	// "certificate expires in 5 days (2026-03-01 12:00 UTC)".
	Warning string
	// CertNotAfter is when the certificate the server showed expires
	// (the earliest of its chain), for checks that speak TLS; zero
	// otherwise.
	CertNotAfter time.Time
}

// Checker probes one server once. The context carries the probe's
// timeout; a Checker returns when it ends and leaves nothing running.
// Checkers are safe for concurrent use by several targets.
type Checker interface {
	Check(ctx context.Context, addr netip.AddrPort) Result
}

// New builds the checker a health_check config describes. It compiles the
// regexp, decodes send_hex and checks the type-specific keys once, so a
// probe never fails for a reason the config already shows.
func New(hc config.HealthCheck) (Checker, error) {
	switch hc.Type {
	case "tcp":
		if !hc.TLS {
			return tcpChecker{}, nil
		}
		o, err := newTLSOptions(hc, "")
		if err != nil {
			return nil, err
		}
		return tcpChecker{tls: o}, nil
	case "http":
		return newHTTPChecker(hc)
	case "send_expect":
		p, re, err := payloadAndExpect(hc)
		if err != nil {
			return nil, err
		}
		return &sendExpectChecker{send: p, expect: re}, nil
	case "udp":
		p, re, err := payloadAndExpect(hc)
		if err != nil {
			return nil, err
		}
		return &udpChecker{send: p, expect: re}, nil
	case "exec":
		if hc.Command == "" {
			return nil, errors.New("health_check: exec check needs a command")
		}
		return &execChecker{command: hc.Command, runAs: hc.RunAs}, nil
	case "dns":
		return newDNSChecker(hc)
	case "radius":
		if hc.Secret == "" {
			return nil, errors.New("health_check: radius check needs the shared secret")
		}
		return &radiusChecker{secret: []byte(hc.Secret)}, nil
	case "ldap":
		return newLDAPChecker(hc)
	case "smtp":
		return newSMTPChecker(hc)
	default:
		return nil, fmt.Errorf("health_check: unknown type %q (want tcp, http, send_expect, exec, dns, udp, radius, ldap or smtp)", hc.Type)
	}
}

// payloadAndExpect decodes what send_expect and udp send and compiles the
// regexp their reply must match.
func payloadAndExpect(hc config.HealthCheck) ([]byte, *regexp.Regexp, error) {
	if hc.Send != "" && hc.SendHex != "" {
		return nil, nil, errors.New("health_check: set either send or send_hex, not both")
	}
	payload := []byte(hc.Send)
	if hc.SendHex != "" {
		b, err := hex.DecodeString(hc.SendHex)
		if err != nil {
			return nil, nil, fmt.Errorf("health_check: send_hex: %w", err)
		}
		payload = b
	}
	re, err := regexp.Compile(hc.ExpectBody)
	if err != nil {
		return nil, nil, fmt.Errorf("health_check: expect_body: %w", err)
	}
	return payload, re, nil
}

// pass and fail build a Result for a probe that started at start.
func pass(start time.Time, format string, args ...any) Result {
	return Result{OK: true, Latency: time.Since(start), Detail: fmt.Sprintf(format, args...), At: start}
}

func fail(start time.Time, format string, args ...any) Result {
	return Result{OK: false, Latency: time.Since(start), Detail: fmt.Sprintf(format, args...), At: start}
}

// failErr is fail with an error made short by describe.
func failErr(ctx context.Context, start time.Time, err error) Result {
	return fail(start, "%s", describe(ctx, start, err))
}

// describe shortens an I/O error for a Result's Detail: the syscall and
// its error ("connect: connection refused") rather than the whole chain
// of addresses, and "timeout after 500.2ms" when the probe ran out of time.
func describe(ctx context.Context, start time.Time, err error) string {
	var ne net.Error
	dl, ok := ctx.Deadline()
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) || errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		(ok && !time.Now().Before(dl)) { // a library that flattened the socket's timeout to text
		return "timeout after " + ms(time.Since(start))
	}
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		return "cancelled"
	}
	return innermost(err)
}

// innermost strips the url.Error and net.OpError wrappers, which only
// repeat the address the caller already knows.
func innermost(err error) string {
	for {
		var ue *url.Error
		var oe *net.OpError
		switch {
		case errors.As(err, &ue) && ue.Err != nil:
			err = ue.Err
		case errors.As(err, &oe) && oe.Err != nil:
			err = oe.Err
		default:
			return err.Error()
		}
	}
}

// ms formats a latency the way Details show it: "1.2ms".
func ms(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// withDeadline gives conn the context's deadline, and closes it when the
// context is cancelled early. The returned stop must be called.
func withDeadline(ctx context.Context, conn net.Conn) (stop func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	return context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
}
