package config

import "time"

// Passive takes a server out as soon as the clients' own traffic fails on
// it, before the active check has failed Fall times: Fail consecutive
// failures (refused or timed-out connects, connections reset before the
// server's first byte, UDP requests left unanswered) within Window mark
// it down. The active check brings it back (Rise passes). Each box judges
// on its own traffic; nothing is replicated.
type Passive struct {
	// Fail is how many consecutive failures mark a server down, 1..100
	// [3].
	Fail int `mapstructure:"fail" json:"fail"`
	// Window is how recent those failures must all be [10s].
	Window time.Duration `mapstructure:"window" json:"window"`
}

// Defaults of the traffic keys.
const (
	// DefaultRetryTimeout is retry_timeout for udp clusters whose health
	// check is dns or radius. It is half of what a client that waits
	// 200 ms allows, so the retried query is answered in time, and 25
	// times the p99 answer time of dnsmasq and FreeRADIUS in the lab
	// (2.5 and 3.6 ms on a loaded machine), so a server that is merely
	// slow is seldom skipped (README, "UDP retry").
	DefaultRetryTimeout  = 100 * time.Millisecond
	DefaultPassiveFail   = 3
	DefaultPassiveWindow = 10 * time.Second
	maxPassiveFail       = 100
	maxRetryTimeout      = 10 * time.Second
)

// trafficDefaults sets retry_timeout for udp clusters checked by dns or
// radius, and the passive defaults.
func (c *Config) trafficDefaults(vc *VirtualCluster, k string) {
	if vc.Protocol == "udp" && !vc.IsNAT() && vc.RetryTimeout == 0 && !c.written(k+".retry_timeout") &&
		vc.HealthCheck != nil && (vc.HealthCheck.Type == "dns" || vc.HealthCheck.Type == "radius") {
		vc.RetryTimeout = DefaultRetryTimeout
	}
	if p := vc.Passive; p != nil {
		if p.Fail == 0 && !c.written(k+".passive.fail") {
			p.Fail = DefaultPassiveFail
		}
		if p.Window == 0 && !c.written(k+".passive.window") {
			p.Window = DefaultPassiveWindow
		}
	}
}

// traffic checks retry_timeout and passive.
func (v *validator) traffic(k string, vc *VirtualCluster) {
	switch {
	case vc.RetryTimeout == 0:
	case vc.Protocol != "udp" || vc.IsNAT():
		v.add(k+".retry_timeout", "only for protocol: udp clusters in mode proxy (this one is %s, mode %s)", vc.Protocol, vc.Mode)
	case vc.RetryTimeout < time.Millisecond || vc.RetryTimeout > maxRetryTimeout:
		v.add(k+".retry_timeout", "must be 0 (off) or 1ms..%s (got %s)", maxRetryTimeout, vc.RetryTimeout)
	}
	p := vc.Passive
	if p == nil {
		return
	}
	if vc.IsNAT() {
		v.add(k+".passive", "not for mode: nat clusters: the kernel forwards their traffic unseen")
		return
	}
	if p.Fail < 1 || p.Fail > maxPassiveFail {
		v.add(k+".passive.fail", "must be 1..%d (got %d)", maxPassiveFail, p.Fail)
	}
	if p.Window <= 0 {
		v.add(k+".passive.window", "must be > 0 (got %s)", p.Window)
	}
	if vc.HealthCheck == nil {
		v.add(k+".passive", "needs a health_check: only the active check brings a server back")
	}
}
