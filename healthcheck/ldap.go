package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/tandem-lb/tandem/pkg/config"
)

// ldapChecker connects (over LDAPS, or upgrading with StartTLS, when
// asked), binds when given a DN, and runs a search that must find at
// least minEntries entries. A server whose database is empty, corrupted
// or not yet loaded still accepts binds and answers the root DSE; it
// fails here, because the entries its clients look for are not there.
//
// The search asks for at most minEntries entries (a server holding more
// stops there with sizeLimitExceeded, which passes) and only for the one
// attribute it checks, so a probe stays small on a large directory.
type ldapChecker struct {
	tls        *tlsOptions // nil: plain LDAP
	implicit   bool        // LDAPS: TLS from the first byte
	bindDN     string
	password   *secretFile // with bindDN
	base       string
	scope      int
	filter     string
	minEntries int
	attribute  string
	expect     *regexp.Regexp // nil: any value of attribute
}

var ldapScopes = map[string]int{
	"base": ldap.ScopeBaseObject,
	"one":  ldap.ScopeSingleLevel,
	"sub":  ldap.ScopeWholeSubtree,
}

func newLDAPChecker(hc config.HealthCheck) (*ldapChecker, error) {
	c := &ldapChecker{
		implicit:   hc.TLS,
		bindDN:     hc.BindDN,
		base:       hc.Base,
		filter:     hc.Filter,
		minEntries: hc.MinEntries,
		attribute:  hc.Attribute,
	}
	if c.base == "" {
		return nil, errors.New("health_check: ldap check needs a base")
	}
	if c.filter == "" {
		c.filter = config.DefaultLDAPFilter
	}
	if _, err := ldap.CompileFilter(c.filter); err != nil {
		return nil, fmt.Errorf("health_check: filter %q: %w", c.filter, err)
	}
	scope, ok := ldapScopes[hc.Scope]
	if hc.Scope == "" {
		scope, ok = ldap.ScopeWholeSubtree, true
	}
	if !ok {
		return nil, fmt.Errorf("health_check: scope must be base, one or sub (got %q)", hc.Scope)
	}
	c.scope = scope
	c.minEntries = max(c.minEntries, 1)
	if hc.Expect != "" {
		re, err := regexp.Compile(hc.Expect)
		if err != nil {
			return nil, fmt.Errorf("health_check: expect: %w", err)
		}
		c.expect = re
	}
	if hc.BindDN != "" {
		pw, err := newSecretFile(hc)
		if err != nil {
			return nil, fmt.Errorf("health_check: password_file: %w", err)
		}
		c.password = pw
	}
	if hc.TLS || hc.StartTLS {
		o, err := newTLSOptions(hc, "")
		if err != nil {
			return nil, err
		}
		c.tls = o
	}
	return c, nil
}

// Check implements Checker.
func (c *ldapChecker) Check(ctx context.Context, addr netip.AddrPort) Result {
	start := time.Now()
	// The socket's deadline bounds every step (and ends go-ldap's or
	// textproto's reads when the probe times out).
	conn, done, failed := dialProbe(ctx, addr, start, c.implicit, c.tls)
	if failed != nil {
		return *failed
	}
	defer done()
	l := ldap.NewConn(conn, c.implicit)
	l.Start()
	// Bounds Close's wait for go-ldap's goroutines, and each request.
	l.SetTimeout(remaining(ctx, time.Second))
	defer func() {
		_ = l.Unbind() // polite: slapd logs a dropped connection otherwise
		_ = l.Close()
	}()

	if c.tls != nil && !c.implicit {
		if err := l.StartTLS(c.tls.config(addr)); err != nil {
			// go-ldap flattens the handshake's error to text.
			if _, x509err, ok := strings.Cut(err.Error(), "x509: "); ok {
				return fail(start, "StartTLS: TLS: %s", strings.TrimSuffix(x509err, ")"))
			}
			return fail(start, "StartTLS: %s", c.describe(ctx, start, err))
		}
	}
	warning := ""
	if c.bindDN != "" {
		var password string
		password, warning = c.password.get()
		if err := l.Bind(c.bindDN, password); err != nil {
			res := fail(start, "bind as %s: %s", c.bindDN, c.describe(ctx, start, err))
			res.Warning = warning
			return res
		}
	}
	res := c.search(ctx, start, l)
	res.Warning = warning
	if c.tls != nil {
		if state, ok := l.TLSConnectionState(); ok {
			res = c.tls.certResult(res, state)
		}
	}
	return res
}

// search runs the search and judges what it found.
func (c *ldapChecker) search(ctx context.Context, start time.Time, l *ldap.Conn) Result {
	attrs := []string{"1.1"} // RFC 4511: no attributes, only the DNs
	if c.attribute != "" {
		attrs = []string{c.attribute}
	}
	timeLimit := int(math.Ceil(remaining(ctx, time.Second).Seconds()))
	req := ldap.NewSearchRequest(c.base, c.scope, ldap.NeverDerefAliases, c.minEntries, timeLimit,
		false, c.filter, attrs, nil)
	sr, err := l.Search(req)
	if err != nil && !(ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) && sr != nil) {
		return fail(start, "search %s: %s", c.base, c.describe(ctx, start, err))
	}
	n := len(sr.Entries)
	if n < c.minEntries {
		return fail(start, "search %s %s found %d %s, want at least %d", c.base, c.filter, n, plural(n, "entry", "entries"), c.minEntries)
	}
	if c.attribute != "" {
		if r, ok := c.judgeAttribute(start, sr.Entries); !ok {
			return r
		}
	}
	return pass(start, "LDAP search found %d %s in %s", n, plural(n, "entry", "entries"), ms(time.Since(start)))
}

// judgeAttribute passes when one of the entries has the attribute with
// a value expect matches (any value without expect).
func (c *ldapChecker) judgeAttribute(start time.Time, entries []*ldap.Entry) (Result, bool) {
	var seen string
	for _, e := range entries {
		for _, v := range e.GetAttributeValues(c.attribute) {
			if c.expect == nil || c.expect.MatchString(v) {
				return Result{}, true
			}
			if seen == "" {
				seen = v
			}
		}
	}
	if seen == "" {
		return fail(start, "no entry found has attribute %s", c.attribute), false
	}
	return fail(start, "%s: %s did not match %s", c.attribute, quote([]byte(seen)), c.expect), false
}

// describe shortens an LDAP error: a server's result code by name
// ("No Such Object (32): …"), an I/O error as describe does.
func (c *ldapChecker) describe(ctx context.Context, start time.Time, err error) string {
	var le *ldap.Error
	if errors.As(err, &le) && le.ResultCode < ldap.ErrorNetwork {
		s := fmt.Sprintf("%s (%d)", ldap.LDAPResultCodeMap[le.ResultCode], le.ResultCode)
		if le.Err != nil && le.Err.Error() != "" {
			s += ": " + le.Err.Error()
		}
		return s
	}
	if le != nil && le.Err != nil {
		err = le.Err // go-ldap's network errors wrap the socket's
	}
	return describe(ctx, start, err)
}

// remaining is the time left before ctx's deadline, or def without one.
func remaining(ctx context.Context, def time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return def
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
