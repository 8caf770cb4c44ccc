package main

import (
	"fmt"

	"github.com/tandem-lb/tandem/pkg/api"
)

// httpExtra is the status line's summary of an http cluster: requests
// by status class, mean latency, and the certificates' warnings.
func httpExtra(h *api.HTTPStatus, refused uint64) string {
	s := fmt.Sprintf("client conns; %d requests (2xx %d, 3xx %d, 4xx %d, 5xx %d), mean %.1fms; refused %d",
		h.Requests, h.Status["2xx"], h.Status["3xx"], h.Status["4xx"], h.Status["5xx"], h.LatencyMeanMs, refused)
	for _, c := range h.Certificates {
		if c.Warning != "" {
			s += fmt.Sprintf("; WARNING: %s %s", c.File, c.Warning)
		}
	}
	return s
}
