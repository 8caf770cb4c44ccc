package dataplane

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkHTTPProxyKeepAlive: requests through an http cluster over
// keep-alive connections, client and server on loopback.
func BenchmarkHTTPProxyKeepAlive(b *testing.B) {
	body := strings.Repeat("x", 100)
	addr := startWebFuncB(b, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })
	vc := httpClusterConfig(b)
	vc.Servers = append(vc.Servers, srvAt("s", addr))
	_, url := runHTTP(b, vc, HTTPOptions{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
