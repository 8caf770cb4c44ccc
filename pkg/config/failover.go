package config

import (
	"net/netip"
	"time"
)

// What the failover section implies.

// Prefixes returns failover.vips parsed, in order. It assumes a validated
// config and skips an entry that does not parse.
func (f Failover) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(f.VIPs))
	for _, s := range f.VIPs {
		if p, _, err := parseVIP(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// MasterDownInterval is how long a backup waits without hearing the master
// before taking over: three adverts plus a skew that is shorter for a
// higher priority (as in VRRP), so that of two backups the better one
// wins: 3*advert + (256-priority)*advert/256.
func (c *Config) MasterDownInterval() time.Duration {
	a := c.Failover.AdvertInterval
	return 3*a + time.Duration(256-c.Failover.Priority)*a/256
}
