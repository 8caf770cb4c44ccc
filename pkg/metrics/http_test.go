package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

// TestMetricsOfAnHTTPCluster: requests by class, the latency histogram
// (cumulative), per-server requests, problems and certificate expiry.
func TestMetricsOfAnHTTPCluster(t *testing.T) {
	st := fixed{Node: "lb1", State: "MASTER", Clusters: []api.Cluster{{Name: "www", Protocol: "http",
		HTTP: &api.HTTPStatus{Requests: 10, Status: map[string]uint64{"2xx": 9, "5xx": 1}, LatencyMeanMs: 2,
			Latency:      []api.LatencyBucket{{LeMs: 1, Count: 6}, {LeMs: 5, Count: 3}, {LeMs: 0, Count: 1}},
			Smuggling:    1,
			Certificates: []api.Certificate{{File: "/etc/tandem/www.pem", NotAfter: time.Now().Add(48 * time.Hour)}}},
		Servers: []api.Server{{Name: "web1", HTTP: &api.ServerHTTP{Requests: 10, Status: map[string]uint64{"2xx": 9}}}}}}}
	rec := httptest.NewRecorder()
	Handler(st).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`tandem_http_requests_total{class="2xx",cluster="www"} 9`,
		`tandem_http_request_duration_seconds_bucket{cluster="www",le="0.001"} 6`,
		`tandem_http_request_duration_seconds_bucket{cluster="www",le="0.005"} 9`,
		`tandem_http_request_duration_seconds_bucket{cluster="www",le="+Inf"} 10`,
		`tandem_http_request_duration_seconds_sum{cluster="www"} 0.02`,
		`tandem_http_server_requests_total{class="2xx",cluster="www",server="web1"} 9`,
		`tandem_http_problems_total{cluster="www",reason="smuggling"} 1`,
		`tandem_http_certificate_expiry_seconds{cluster="www",file="/etc/tandem/www.pem"} 17279`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
