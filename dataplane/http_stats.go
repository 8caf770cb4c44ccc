package dataplane

import (
	"sync/atomic"
	"time"
)

// latencyBounds are the upper bounds of the request latency histogram:
// the time from the request's headers read to the response's end.
var latencyBounds = []time.Duration{
	time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// statusClasses names the status classes; index 0 counts requests that
// got no response from a server (the proxy answered, or the client left).
var statusClasses = [6]string{"none", "1xx", "2xx", "3xx", "4xx", "5xx"}

// reqCounters count requests, by status class and latency.
type reqCounters struct {
	requests atomic.Uint64
	status   [6]atomic.Uint64
	latency  [13]atomic.Uint64 // len(latencyBounds)+1
	sumNanos atomic.Int64
}

func (r *reqCounters) observe(class int, d time.Duration) {
	r.requests.Add(1)
	r.status[class].Add(1)
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	r.latency[i].Add(1)
	r.sumNanos.Add(int64(d))
}

// httpStats are an HTTP cluster's request counters and its servers'.
type httpStats struct {
	all     reqCounters
	servers map[*Server]*reqCounters
	// events count what the proxy refused or failed by itself.
	smuggling, tooLarge, noServer, badGateway, timeouts, retries atomic.Uint64
	// malformed and headerTooLarge count what net/http answered itself
	// (400, 431): requests it could not parse.
	malformed, headerTooLarge atomic.Uint64
}

func newHTTPStats(servers []*Server) *httpStats {
	st := &httpStats{servers: make(map[*Server]*reqCounters, len(servers))}
	for _, s := range servers {
		st.servers[s] = &reqCounters{}
	}
	return st
}

// statusClass is the index in statusClasses of a status code.
func statusClass(code int) int {
	if code < 100 || code > 599 {
		return 0
	}
	return code / 100
}

// RequestStats is a snapshot of request counters.
type RequestStats struct {
	Requests uint64
	// Status counts requests by status class: 1xx..5xx, and "none" for
	// those that got no response (the client left).
	Status map[string]uint64
	// Latency counts requests by latency: Latency[i] those at most
	// LatencyBounds[i], the last those above every bound.
	Latency     []uint64
	MeanLatency time.Duration
}

// LatencyBounds are the bounds of RequestStats.Latency.
func LatencyBounds() []time.Duration { return latencyBounds }

func (r *reqCounters) snapshot() RequestStats {
	st := RequestStats{Requests: r.requests.Load(), Status: make(map[string]uint64, 6),
		Latency: make([]uint64, len(r.latency))}
	for i, n := range statusClasses {
		st.Status[n] = r.status[i].Load()
	}
	for i := range r.latency {
		st.Latency[i] = r.latency[i].Load()
	}
	if st.Requests > 0 {
		st.MeanLatency = time.Duration(r.sumNanos.Load() / int64(st.Requests))
	}
	return st
}

// HTTPStats is a snapshot of an HTTP cluster's counters.
type HTTPStats struct {
	// ClusterStats: Active is client connections open, Total requests
	// handled; a server's Active and Total count requests.
	ClusterStats
	RequestStats
	// Servers' request counters, by server name.
	ServerRequests map[string]RequestStats
	// Smuggling counts requests refused for carrying both Content-Length
	// and Transfer-Encoding; TooLarge bodies over max_body_bytes (413);
	// NoServer requests no server could take (503); BadGateway failed
	// exchanges with a server (502); Timeouts servers that did not answer
	// in time (504); Retries requests sent again elsewhere after a
	// failed connect. Malformed counts requests net/http could not parse
	// (answered 400 by itself), HeaderTooLarge those over
	// max_header_bytes (431); neither reaches Requests.
	Smuggling, TooLarge, NoServer, BadGateway, Timeouts, Retries uint64
	Malformed, HeaderTooLarge                                    uint64
	// Certificates are the served certificates (TLS), the default first.
	Certificates []CertInfo
}

// Stats returns a snapshot of the counters.
func (c *HTTPCluster) Stats() HTTPStats {
	s := c.stats
	st := HTTPStats{
		ClusterStats: ClusterStats{
			Name: c.name, Addr: c.addr, Serving: c.serving.Load(), Active: c.active.Load(),
			Total: s.all.requests.Load(), Refused: make(map[string]uint64, numReasons),
			Panics: c.panics.Load(),
		},
		RequestStats:   s.all.snapshot(),
		ServerRequests: make(map[string]RequestStats, len(s.servers)),
		Smuggling:      s.smuggling.Load(), TooLarge: s.tooLarge.Load(), NoServer: s.noServer.Load(),
		BadGateway: s.badGateway.Load(), Timeouts: s.timeouts.Load(), Retries: s.retries.Load(),
		Malformed: s.malformed.Load(), HeaderTooLarge: s.headerTooLarge.Load(),
	}
	for r := range numReasons {
		st.Refused[r.String()] = c.refused[r].Load()
	}
	for _, sv := range c.pool.Servers() {
		st.Servers = append(st.Servers, ServerStats{
			Name: sv.Name, Addr: sv.Addr, Healthy: sv.Healthy(), Admin: sv.Admin().String(),
			Active: sv.Active(), Total: sv.Total(), Failures: sv.Failures(), ConnectTime: sv.ConnectTime(),
		})
		st.ServerRequests[sv.Name] = s.servers[sv].snapshot()
	}
	if c.certs != nil {
		st.Certificates = c.certs.info(time.Now())
	}
	return st
}
