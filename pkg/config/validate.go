package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Accepted values of the enumerated keys.
var (
	LogLevels    = []string{"debug", "info", "warn", "error"}
	Protocols    = []string{"tcp", "udp", "http"}
	Algorithms   = []string{"round_robin", "weighted_round_robin", "least_conn", "source_hash", "random_two", "fastest_response"}
	HealthChecks = []string{"tcp", "http", "send_expect", "dns", "udp", "radius", "ldap", "smtp", "exec"}
)

// errNoKey is the message for a pair with neither key nor insecure: true.
const errNoKey = "no cluster key: set cluster.secret or cluster.secret_file, or cluster.insecure: true"

// Validate checks the whole config and returns an Errors listing every
// problem found, each with its key path and, when the config came from a
// file, the file and line; nil when the config is valid. It reads
// cluster.secret_file and the health checks' password_file and ca_file,
// stats failover.notify and looks node.api_group up in the group
// database, nothing else.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.node()
	v.cluster()
	v.failover()
	v.clusters()
	v.ownAddresses()
	v.runAs()
	v.apiAdminGroup()
	v.counts()
	return v.probs.err()
}

// validator collects problems as the checks run.
type validator struct {
	c     *Config
	probs Errors
}

func (v *validator) add(key, format string, args ...any) {
	v.probs = append(v.probs, v.c.problem(key, format, args...))
}

func (v *validator) node() {
	n := v.c.Node
	switch {
	case n.Name == "":
		v.add("node.name", "required: this node's name, unique in the pair")
	case strings.ContainsFunc(n.Name, unicode.IsSpace):
		v.add("node.name", "must not contain spaces (got %q)", n.Name)
	}
	if n.RTPriority < 0 || n.RTPriority > 99 {
		v.add("node.rt_priority", "must be 0 (normal scheduling) or 1..99 (got %d)", n.RTPriority)
	}
	if !slices.Contains(LogLevels, n.LogLevel) {
		v.add("node.log_level", "must be one of %s (got %q)", strings.Join(LogLevels, ", "), n.LogLevel)
	}
	if !filepath.IsAbs(n.APISocket) {
		v.add("node.api_socket", "must be an absolute path (got %q)", n.APISocket)
	}
	if n.APIGroup != "" {
		if _, err := n.APIGroupID(); err != nil {
			v.add("node.api_group", "%v", err)
		}
	}
	if n.MetricsListen != "" {
		if err := checkHostPort(n.MetricsListen); err != nil {
			v.add("node.metrics_listen", "must be empty or host:port: %v", err)
		}
	}
	v.web()
}

func (v *validator) cluster() {
	cl := v.c.Cluster
	bind, bindErr := parseAddrPort(cl.Bind)
	switch {
	case cl.Bind == "":
		v.add("cluster.bind", "required: this node's IP:port for the pair")
	case bindErr != nil:
		v.add("cluster.bind", "%v", bindErr)
	}
	if len(cl.Peers) == 0 {
		v.add("cluster.peers", "required: the other box's IP:port")
	}
	for i, p := range cl.Peers {
		k := "cluster.peers[" + strconv.Itoa(i) + "]"
		ap, err := parseAddrPort(p)
		switch {
		case err != nil:
			v.add(k, "%v", err)
		case bindErr == nil && ap == bind:
			v.add(k, "must not be this node's own cluster.bind %s", cl.Bind)
		}
	}
	if cl.Label == "" {
		v.add("cluster.label", "must not be empty")
	}
	v.heartbeatPaths(bind, bindErr == nil)
	v.clusterKey()
}

// heartbeatPaths checks the extra heartbeat paths: distinct addresses on
// cluster.bind's port (memberlist listens on one port).
func (v *validator) heartbeatPaths(bind netip.AddrPort, bindOK bool) {
	seen := map[netip.Addr]string{}
	if bindOK {
		seen[bind.Addr()] = "cluster.bind"
	}
	for i, hp := range v.c.Cluster.HeartbeatPaths {
		k := "cluster.heartbeat_paths[" + strconv.Itoa(i) + "]"
		b, err := parseAddrPort(hp.Bind)
		switch {
		case hp.Bind == "":
			v.add(k+".bind", "required: this node's IP:port on the path")
		case err != nil:
			v.add(k+".bind", "%v", err)
		case bindOK && b.Port() != bind.Port():
			v.add(k+".bind", "must use cluster.bind's port %d (got %d)", bind.Port(), b.Port())
		case bind.Addr().IsUnspecified() || b.Addr().IsUnspecified():
			v.add(k+".bind", "must be a specific address, and so must cluster.bind (got %s)", b.Addr())
		case seen[b.Addr()] != "":
			v.add(k+".bind", "%s is already used by %s", b.Addr(), seen[b.Addr()])
		default:
			seen[b.Addr()] = k + ".bind"
		}
		pa, err := parseAddrPort(hp.Peer)
		switch {
		case hp.Peer == "":
			v.add(k+".peer", "required: the other box's IP:port on the path")
		case err != nil:
			v.add(k+".peer", "%v", err)
		case slices.Contains(v.c.Cluster.Peers, hp.Peer):
			v.add(k+".peer", "%s is already in cluster.peers: a second path needs the peer's address on that path", hp.Peer)
		case seen[pa.Addr()] != "":
			v.add(k+".peer", "%s is this node's own address (%s)", pa.Addr(), seen[pa.Addr()])
		}
	}
}

func (v *validator) clusterKey() {
	_, probs := v.c.clusterKeys()
	for _, p := range probs {
		v.add(p.key, "%s", p.msg)
	}
}

func (v *validator) failover() {
	f := v.c.Failover
	if f.Interface == "" {
		v.add("failover.interface", "required: the interface the VIPs live on")
	}
	if f.Priority < minPriority || f.Priority > maxPriority {
		v.add("failover.priority", "must be %d..%d (got %d)", minPriority, maxPriority, f.Priority)
	}
	if f.PreemptDelay < 0 {
		v.add("failover.preempt_delay", "must not be negative (got %s)", f.PreemptDelay)
	}
	if f.AdvertInterval < minAdvertInterval || f.AdvertInterval > maxAdvertInterval {
		v.add("failover.advert_interval", "must be between %s and %s (got %s)", minAdvertInterval, maxAdvertInterval, f.AdvertInterval)
	}
	if len(f.VIPs) == 0 {
		v.add("failover.vips", "required: at least one VIP in CIDR form, like 198.18.0.100/24")
	}
	seen := make(map[netip.Addr]int)
	for i, s := range f.VIPs {
		k := "failover.vips[" + strconv.Itoa(i) + "]"
		p, _, err := parseVIP(s)
		if err != nil {
			v.add(k, "%v", err)
			continue
		}
		if j, dup := seen[p.Addr()]; dup {
			v.add(k, "duplicate of failover.vips[%d] (%s)", j, f.VIPs[j])
			continue
		}
		seen[p.Addr()] = i
	}
	g := f.GARP
	if g.Count < 0 || g.Count > maxGARPCount {
		v.add("failover.garp.count", "must be 0..%d (got %d)", maxGARPCount, g.Count)
	}
	if g.Count > 1 && g.Interval <= 0 {
		v.add("failover.garp.interval", "must be > 0 when count > 1 (got %s)", g.Interval)
	}
	if g.Refresh < 0 {
		v.add("failover.garp.refresh", "must not be negative (got %s)", g.Refresh)
	}
	for i, t := range f.TrackInterfaces {
		if strings.TrimSpace(t) == "" {
			v.add("failover.track_interfaces["+strconv.Itoa(i)+"]", "must not be empty")
		}
	}
	if f.Notify != "" {
		if err := checkExecutable(f.Notify); err != nil {
			v.add("failover.notify", "%v", err)
		}
	}
	if f.Witness != "" {
		if a, err := netip.ParseAddr(f.Witness); err != nil || a.IsUnspecified() || a.Zone() != "" {
			v.add("failover.witness", "must be an IP address to ping, like the gateway's 198.18.0.1 (got %q)", f.Witness)
		}
	}
	if f.LinkHoldDown < 0 || f.LinkHoldDown > maxLinkHoldDown {
		v.add("failover.link_holddown", "must be 0 (off) to %s (got %s)", maxLinkHoldDown, f.LinkHoldDown)
	}
}

// checkExecutable reports why path is not an executable regular file.
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s does not exist", path)
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", path)
	case fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s is not executable", path)
	}
	return nil
}

// parseAddrPort parses "IP:port" (IPv6 in brackets) with a non-zero port.
func parseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, fmt.Errorf("must be IP:port, like 198.18.0.11:7946 (got %q)", s)
	}
	if ap.Port() == 0 {
		return ap, fmt.Errorf("port must be %d..%d (got %q)", minPort, maxPort, s)
	}
	return ap, nil
}

// checkHostPort accepts host:port with any host (a name, an IP or empty
// for all addresses) and a port 1..65535.
func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("got %q", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < minPort || n > maxPort {
		return fmt.Errorf("port must be %d..%d (got %q)", minPort, maxPort, s)
	}
	return nil
}
