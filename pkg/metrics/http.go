package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-lb/tandem/pkg/api"
)

var (
	dHTTPRequests   = desc("http_requests_total", "Requests of an http cluster, by status class (none: no response, the client left).", "cluster", "class")
	dHTTPDuration   = desc("http_request_duration_seconds", "Time from a request's headers to its response's end.", "cluster")
	dHTTPSrvReqs    = desc("http_server_requests_total", "Requests sent to a server of an http cluster, by status class.", "cluster", "server", "class")
	dHTTPProblems   = desc("http_problems_total", "Requests the proxy answered itself, by reason (smuggling, too_large, no_server, bad_gateway, timeout, malformed, header_too_large) and retries after a failed connect (retry).", "cluster", "reason")
	dHTTPCertExpiry = desc("http_certificate_expiry_seconds", "Seconds until a served certificate expires (negative once past).", "cluster", "file")
	httpDescs       = []*prometheus.Desc{dHTTPRequests, dHTTPDuration, dHTTPSrvReqs, dHTTPProblems, dHTTPCertExpiry}
)

// collectHTTP sends the metrics of an http cluster (none for others).
func collectHTTP(ch chan<- prometheus.Metric, cl api.Cluster) {
	h := cl.HTTP
	if h == nil {
		return
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	for class, n := range h.Status {
		counter(dHTTPRequests, float64(n), cl.Name, class)
	}
	buckets := map[float64]uint64{}
	var cum uint64
	for _, b := range h.Latency {
		cum += b.Count
		if b.LeMs > 0 {
			buckets[b.LeMs/1000] = cum
		}
	}
	sum := h.LatencyMeanMs / 1000 * float64(h.Requests)
	ch <- prometheus.MustNewConstHistogram(dHTTPDuration, h.Requests, sum, buckets, cl.Name)
	for _, s := range cl.Servers {
		if s.HTTP == nil {
			continue
		}
		for class, n := range s.HTTP.Status {
			counter(dHTTPSrvReqs, float64(n), cl.Name, s.Name, class)
		}
	}
	for reason, n := range map[string]uint64{"smuggling": h.Smuggling, "too_large": h.TooLarge, "no_server": h.NoServer,
		"bad_gateway": h.BadGateway, "timeout": h.Timeouts, "retry": h.Retries, "malformed": h.Malformed,
		"header_too_large": h.HeaderTooLarge} {
		counter(dHTTPProblems, float64(n), cl.Name, reason)
	}
	for _, c := range h.Certificates {
		ch <- prometheus.MustNewConstMetric(dHTTPCertExpiry, prometheus.GaugeValue, time.Until(c.NotAfter).Seconds(), cl.Name, c.File)
	}
}
