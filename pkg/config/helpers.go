package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// ClusterKey returns the pair's memberlist key, decoded from
// cluster.secret or read from cluster.secret_file (surrounding whitespace
// trimmed, so `tandem keygen > FILE` works). It returns nil, nil when
// neither is set and cluster.insecure is true, and an error when neither
// is set otherwise, when both are set, or when the key is not base64 of
// 16, 24 or 32 bytes.
func (c *Config) ClusterKey() ([]byte, error) {
	cl := c.Cluster
	switch {
	case cl.Secret != "" && cl.SecretFile != "":
		return nil, errors.New("set either cluster.secret or cluster.secret_file, not both")
	case cl.Secret != "":
		return decodeKey(cl.Secret)
	case cl.SecretFile != "":
		b, err := os.ReadFile(cl.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read the key: %w", err)
		}
		key, err := decodeKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cl.SecretFile, err)
		}
		return key, nil
	case cl.Insecure:
		return nil, nil
	}
	return nil, errors.New(errNoKey)
}

// decodeKey decodes a base64 AES key; memberlist takes 16, 24 or 32 bytes.
func decodeKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, errors.New("must be base64 of a 16, 24 or 32-byte key (`tandem keygen` makes one): not valid base64")
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("must be base64 of a 16, 24 or 32-byte key (`tandem keygen` makes one): got %d bytes", len(key))
}

// Prefixes returns failover.vips parsed, in order. It assumes a validated
// config and skips an entry that does not parse.
func (f Failover) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(f.VIPs))
	for _, s := range f.VIPs {
		if p, err := netip.ParsePrefix(s); err == nil {
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
