package api

import "time"

// HTTPStatus is what status adds for a protocol: http cluster. Its
// cluster's ActiveConns counts client connections, TotalConns requests.
type HTTPStatus struct {
	Requests uint64 `json:"requests"`
	// Status counts responses by class: 1xx..5xx, and none for requests
	// that got no response (the client left).
	Status        map[string]uint64 `json:"status"`
	LatencyMeanMs float64           `json:"latency_mean_ms"`
	// Latency counts requests by latency: each bucket those at most
	// LeMs milliseconds and above the bucket before; the last has LeMs 0
	// (above every bound).
	Latency []LatencyBucket `json:"latency"`
	// Smuggling counts requests refused (400) for carrying both
	// Content-Length and Transfer-Encoding; TooLarge bodies over
	// max_body_bytes (413); NoServer requests no server could take (503);
	// BadGateway failed exchanges with a server (502); Timeouts servers
	// too slow to answer (504); Retries requests sent to another server
	// after a failed connect. Malformed counts requests too broken to
	// parse (400), HeaderTooLarge those over max_header_bytes (431).
	Smuggling  uint64 `json:"smuggling"`
	TooLarge   uint64 `json:"too_large"`
	NoServer   uint64 `json:"no_server"`
	BadGateway uint64 `json:"bad_gateway"`
	Timeouts   uint64 `json:"timeouts"`
	Retries    uint64 `json:"retries"`
	// Malformed and HeaderTooLarge: see Smuggling.
	Malformed      uint64 `json:"malformed"`
	HeaderTooLarge uint64 `json:"header_too_large"`
	// Certificates are the certificates served (tls), the default first.
	Certificates []Certificate `json:"certificates,omitempty"`
}

// LatencyBucket is one bucket of a latency histogram.
type LatencyBucket struct {
	LeMs  float64 `json:"le_ms"`
	Count uint64  `json:"count"`
}

// Certificate is a certificate an http cluster serves.
type Certificate struct {
	File     string    `json:"file"`
	Names    []string  `json:"names"`
	NotAfter time.Time `json:"not_after"`
	// ExpiresInDays is rounded down; negative once past.
	ExpiresInDays int `json:"expires_in_days"`
	// Warning is set when the certificate expires within
	// tls.cert_warn_days, or has expired.
	Warning string `json:"warning,omitempty"`
}

// ServerHTTP is a server's requests in an http cluster.
type ServerHTTP struct {
	Requests      uint64            `json:"requests"`
	Status        map[string]uint64 `json:"status"`
	LatencyMeanMs float64           `json:"latency_mean_ms"`
}
