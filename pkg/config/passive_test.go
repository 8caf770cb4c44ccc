package config

import (
	"testing"
	"time"
)

// udpDNS turns base's web cluster into a udp cluster checked by dns.
func udpDNS(t *testing.T, extra string) string {
	return edit(t, "port: 80\n    health_check:\n      type: http\n      path: /",
		"port: 53\n    protocol: udp\n"+extra+"    health_check:\n      type: dns\n      query: a.example")
}

// TestTrafficDefaults: retry_timeout is on by default only for udp
// clusters checked by dns or radius, and a written 0 keeps it off;
// passive's keys default when the block is there.
func TestTrafficDefaults(t *testing.T) {
	if got := mustLoad(t, udpDNS(t, "")).Clusters[0].RetryTimeout; got != DefaultRetryTimeout {
		t.Errorf("udp+dns retry_timeout = %s, want %s", got, DefaultRetryTimeout)
	}
	if got := mustLoad(t, udpDNS(t, "    retry_timeout: 0\n")).Clusters[0].RetryTimeout; got != 0 {
		t.Errorf("written retry_timeout: 0 became %s", got)
	}
	if got := mustLoad(t, udpDNS(t, "    retry_timeout: 250ms\n")).Clusters[0].RetryTimeout; got != 250*time.Millisecond {
		t.Errorf("retry_timeout: 250ms became %s", got)
	}
	c := mustLoad(t, edit(t, "port: 80\n    health_check:\n      type: http\n      path: /",
		"port: 514\n    protocol: udp\n    health_check:\n      type: udp\n      send: x"))
	if got := c.Clusters[0].RetryTimeout; got != 0 {
		t.Errorf("plain udp cluster got retry_timeout %s", got)
	}
	c = mustLoad(t, edit(t, "    port: 80\n", "    port: 80\n    passive: {}\n"))
	if p := c.Clusters[0].Passive; p == nil || p.Fail != DefaultPassiveFail || p.Window != DefaultPassiveWindow {
		t.Errorf("passive defaults: %+v", p)
	}
	if c.Clusters[0].RetryTimeout != 0 {
		t.Error("a tcp cluster got a retry_timeout")
	}
	if h := mustLoad(t, base).Hash(); h != mustLoad(t, base).Hash() {
		t.Error("hash unstable")
	}
}

// TestTrafficProblems: each bad value is reported at its key and line.
func TestTrafficProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"passive ok", edit(t, "    port: 80\n", "    port: 80\n    passive: {fail: 2, window: 5s}\n"), nil},
		{"retry on tcp", edit(t, "    port: 80\n", "    port: 80\n    retry_timeout: 50ms\n"),
			[]string{"FILE:20: clusters[0].retry_timeout: only for protocol: udp clusters in mode proxy (this one is tcp, mode proxy)"}},
		{"retry too long", udpDNS(t, "    retry_timeout: 1m\n"),
			[]string{"FILE:21: clusters[0].retry_timeout: must be 0 (off) or 1ms..10s (got 1m0s)"}},
		{"retry negative", udpDNS(t, "    retry_timeout: -1s\n"),
			[]string{"FILE:21: clusters[0].retry_timeout: must be 0 (off) or 1ms..10s (got -1s)"}},
		{"passive fail", edit(t, "    port: 80\n", "    port: 80\n    passive:\n      fail: 0\n"),
			[]string{"FILE:21: clusters[0].passive.fail: must be 1..100 (got 0)"}},
		{"passive window", edit(t, "    port: 80\n", "    port: 80\n    passive:\n      window: 0s\n"),
			[]string{"FILE:21: clusters[0].passive.window: must be > 0 (got 0s)"}},
		{"passive without check", edit(t, "    port: 80\n    health_check:\n      type: http\n      path: /\n",
			"    port: 80\n    passive: {fail: 2}\n"),
			[]string{"FILE:20: clusters[0].passive: needs a health_check: only the active check brings a server back"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assertProblems(t, problems(t, tt.src), tt.want) })
	}
}
