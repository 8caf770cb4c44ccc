package healthcheck

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
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
// substring of the body. It never reuses a connection between probes (a
// health check should see a fresh connect, as a client would) and never
// follows a redirect (a 302 to a login page is not a 200).
type httpChecker struct {
	path   string
	status int
	body   string
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
	return &httpChecker{
		path:   path,
		status: status,
		body:   hc.ExpectBody,
		client: &http.Client{
			Transport: &http.Transport{
				DisableKeepAlives:      true,
				DisableCompression:     true,
				MaxResponseHeaderBytes: maxHTTPHeader,
				Proxy:                  nil, // never a proxy from the environment
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// Check implements Checker.
func (c *httpChecker) Check(ctx context.Context, addr netip.AddrPort) Result {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr.String()+c.path, nil)
	if err != nil {
		return fail(start, "request: %v", err)
	}
	req.Header.Set("User-Agent", "tandem-healthcheck")
	resp, err := c.client.Do(req)
	if err != nil {
		return failErr(ctx, start, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != c.status {
		return fail(start, "HTTP %d, want %d", resp.StatusCode, c.status)
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
