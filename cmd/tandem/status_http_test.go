package main

import (
	"strings"
	"testing"

	"github.com/tandem-lb/tandem/pkg/api"
)

// TestHTTPExtra: the status line of an http cluster shows its requests
// by class and a certificate near expiry.
func TestHTTPExtra(t *testing.T) {
	got := httpExtra(&api.HTTPStatus{Requests: 12, Status: map[string]uint64{"2xx": 10, "5xx": 2}, LatencyMeanMs: 1.5,
		Certificates: []api.Certificate{{File: "/etc/tandem/www.pem", Warning: "certificate expires in 3 days"}}}, 4)
	for _, want := range []string{"12 requests (2xx 10, 3xx 0, 4xx 0, 5xx 2)", "mean 1.5ms", "refused 4",
		"WARNING: /etc/tandem/www.pem certificate expires in 3 days"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
}
