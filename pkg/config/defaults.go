package config

import (
	"net/netip"
	"strconv"
	"time"
)

// Per-cluster defaults, applied by ApplyDefaults.
const (
	DefaultProtocol           = "tcp"
	DefaultAlgorithm          = "round_robin"
	DefaultWeight             = 1
	DefaultMaskV4             = 32
	DefaultMaskV6             = 128
	DefaultHealthInterval     = time.Second
	DefaultHealthTimeout      = 500 * time.Millisecond
	DefaultHealthRise         = 2
	DefaultHealthFall         = 2
	DefaultHealthExpectStatus = 200
	DefaultCertWarnDays       = 14
	DefaultLDAPFilter         = "(objectClass=*)"
	DefaultLDAPScope          = "sub"
	DefaultLDAPMinEntries     = 1
	healthCheckHTTP           = "http"
	healthCheckLDAP           = "ldap"
	persistenceModeSourceIP   = "source_ip"
	minAdvertInterval         = 10 * time.Millisecond
	maxAdvertInterval         = 10 * time.Second
	maxGARPCount              = 100
	maxLinkHoldDown           = time.Minute
	minPriority, maxPriority  = 1, 254
	minWeight, maxWeight      = 1, 256
	minPort, maxPort          = 1, 65535
	maxMaskV4, maxMaskV6      = 32, 128
)

// ApplyDefaults fills in what Default cannot: the defaults inside each
// virtual cluster (protocol, algorithm, server weights, persistence mask,
// health-check timing) and failover.track_interfaces = [interface]. Load
// calls it; code that builds a Config by hand should too.
//
// A key written in the file is never replaced, even with a zero value, so
// `weight: 0` is reported by Validate instead of silently becoming 1.
func (c *Config) ApplyDefaults() {
	f := &c.Failover
	if f.TrackInterfaces == nil && f.Interface != "" && !c.written("failover.track_interfaces") {
		// Every interface a VIP lives on is tracked: an inside floating
		// address whose cable is pulled is as lost as a front VIP.
		f.TrackInterfaces = f.VIPInterfaces()
	}
	if o := c.Outbound; o != nil && len(o.Sources) == 0 && !c.written("outbound.sources") {
		for _, p := range f.PrefixesOn(o.Interface) {
			o.Sources = append(o.Sources, p.Masked().String())
		}
	}
	for i := range c.Clusters {
		vc := &c.Clusters[i]
		k := "clusters[" + strconv.Itoa(i) + "]"
		if vc.Protocol == "" && !c.written(k+".protocol") {
			vc.Protocol = DefaultProtocol
		}
		if vc.Algorithm == "" && !c.written(k+".algorithm") {
			vc.Algorithm = DefaultAlgorithm
		}
		if vc.Mode == "" && !c.written(k+".mode") {
			vc.Mode = ModeProxy
		}
		if vc.IsNAT() {
			if vc.NAT == nil {
				vc.NAT = &NAT{}
			}
			if vc.NAT.Return == "" && !c.written(k+".nat.return") {
				vc.NAT.Return = ReturnGateway
			}
		}
		for j := range vc.Servers {
			s := &vc.Servers[j]
			if s.Weight == 0 && !c.written(k+".servers["+strconv.Itoa(j)+"].weight") {
				s.Weight = DefaultWeight
			}
		}
		if p := vc.Persistence; p != nil && p.Mask == 0 && !c.written(k+".persistence.mask") {
			p.Mask = DefaultMaskV4
			if a, err := netip.ParseAddr(vc.VIP); err == nil && a.Is6() && !a.Is4In6() {
				p.Mask = DefaultMaskV6
			}
		}
		if h := vc.HealthCheck; h != nil {
			c.healthDefaults(h, k+".health_check")
		}
		if vc.IsHTTP() {
			c.httpDefaults(vc, k)
		}
		c.trafficDefaults(vc, k)
		if vc.Agent != nil {
			c.agentDefaults(vc.Agent, k+".agent")
		}
	}
}

func (c *Config) healthDefaults(h *HealthCheck, k string) {
	if h.Interval == 0 && !c.written(k+".interval") {
		h.Interval = DefaultHealthInterval
	}
	if h.Timeout == 0 && !c.written(k+".timeout") {
		h.Timeout = DefaultHealthTimeout
	}
	if h.Rise == 0 && !c.written(k+".rise") {
		h.Rise = DefaultHealthRise
	}
	if h.Fall == 0 && !c.written(k+".fall") {
		h.Fall = DefaultHealthFall
	}
	if h.Type == healthCheckHTTP && h.ExpectStatus == 0 && !c.written(k+".expect_status") {
		h.ExpectStatus = DefaultHealthExpectStatus
	}
	if (h.TLS || h.StartTLS) && h.CertWarnDays == 0 && !c.written(k+".cert_warn_days") {
		h.CertWarnDays = DefaultCertWarnDays
	}
	if h.Type == healthCheckLDAP {
		if h.Filter == "" && !c.written(k+".filter") {
			h.Filter = DefaultLDAPFilter
		}
		if h.Scope == "" && !c.written(k+".scope") {
			h.Scope = DefaultLDAPScope
		}
		if h.MinEntries == 0 && !c.written(k+".min_entries") {
			h.MinEntries = DefaultLDAPMinEntries
		}
	}
}

// written reports whether key was given in the file or the environment.
func (c *Config) written(key string) bool {
	if _, ok := c.lines[key]; ok {
		return true
	}
	_, ok := c.env[key]
	return ok
}
