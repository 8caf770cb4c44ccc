package healthcheck

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// maxHTTPBody is how much of a reply body the http check reads;
// maxHTTPHeader bounds the reply's header (net/http's default is 1 MiB).
const (
	maxHTTPBody   = 64 << 10
	maxHTTPHeader = 64 << 10
)

// httpChecker GETs a path and expects a status and, optionally, a
// substring of the body and a header. It never reuses a connection
// between probes (a health check should see a fresh connect, as a
// client would) and never follows a redirect (a 302 to a login page is
// not a 200). With TLS it speaks https and checks the certificate as
// the tcp check does.
type httpChecker struct {
	path   string
	host   string // Host header; "" = the server's address
	status int
	body   string
	header string         // a header the reply must carry; "" = none
	value  *regexp.Regexp // that header's value must match; nil = any
	tls    *tlsOptions    // nil: plain http
	client *http.Client
}

func newHTTPChecker(hc config.HealthCheck) (*httpChecker, error) {
	path := hc.Path
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("health_check: http path must start with / (got %q)", path)
	}
	status := hc.ExpectStatus
	if status == 0 {
		status = config.DefaultHealthExpectStatus
	}
	header, value, err := hc.ExpectedHeader()
	if err != nil {
		return nil, fmt.Errorf("health_check: expect_header: %w", err)
	}
	c := &httpChecker{path: path, host: hc.Host, status: status, body: hc.ExpectBody, header: header, value: value}
	transport := &http.Transport{
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxHTTPHeader,
		Proxy:                  nil, // never a proxy from the environment
	}
	if hc.TLS {
		// With a Host header the certificate is checked for that name,
		// as a browser asking for the site would; else for the IP.
		name := hc.Host
		if h, _, err := net.SplitHostPort(name); err == nil {
			name = h
		}
		if c.tls, err = newTLSOptions(hc, name); err != nil {
			return nil, err
		}
		// One config for every server: ServerName "" makes the
		// transport verify each server's own IP address.
		transport.TLSClientConfig = &tls.Config{ServerName: c.tls.serverName, RootCAs: c.tls.roots}
	}
	c.client = &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// Check implements Checker.
func (c *httpChecker) Check(ctx context.Context, addr netip.AddrPort) Result {
	start := time.Now()
	scheme := "http://"
	if c.tls != nil {
		scheme = "https://"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+addr.String()+c.path, nil)
	if err != nil {
		return fail(start, "request: %v", err)
	}
	if c.host != "" {
		req.Host = c.host
	}
	req.Header.Set("User-Agent", "tandem-healthcheck")
	resp, err := c.client.Do(req)
	if err != nil {
		if s, ok := certError(err); ok {
			return fail(start, "%s", s)
		}
		return failErr(ctx, start, err)
	}
	defer resp.Body.Close()
	res := c.judge(ctx, start, resp)
	if c.tls != nil && resp.TLS != nil {
		res = c.tls.certResult(res, *resp.TLS)
	}
	return res
}

// judge checks a reply's status, header and body.
func (c *httpChecker) judge(ctx context.Context, start time.Time, resp *http.Response) Result {
	if resp.StatusCode != c.status {
		return fail(start, "HTTP %d, want %d", resp.StatusCode, c.status)
	}
	if c.header != "" {
		values := resp.Header.Values(c.header)
		if len(values) == 0 {
			return fail(start, "HTTP %d, no %s header", resp.StatusCode, c.header)
		}
		if c.value != nil && !anyMatch(c.value, values) {
			return fail(start, "HTTP %d, header %s: %q did not match %s", resp.StatusCode, c.header, values[0], c.value)
		}
	}
	if c.body != "" {
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody))
		if err != nil {
			return fail(start, "HTTP %d, reading body: %s", resp.StatusCode, describe(ctx, start, err))
		}
		if !strings.Contains(string(b), c.body) {
			return fail(start, "HTTP %d, body did not contain %q", resp.StatusCode, c.body)
		}
	}
	return pass(start, "HTTP %d in %s", resp.StatusCode, ms(time.Since(start)))
}

// anyMatch reports whether re matches one of values.
func anyMatch(re *regexp.Regexp, values []string) bool {
	for _, v := range values {
		if re.MatchString(v) {
			return true
		}
	}
	return false
}
