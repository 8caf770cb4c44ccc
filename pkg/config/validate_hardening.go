package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"strings"
)

// ownAddresses refuses a VIP that is one of the box's own addresses named
// in the config (cluster.bind, a heartbeat path's bind): the release of
// a VIP deletes the address, and with it the box's management and
// heartbeats. (That a VIP is not on the interface already, put there by
// the OS, is checked at start, where the interface can be read.)
func (v *validator) ownAddresses() {
	own := map[netip.Addr]string{}
	if ap, err := netip.ParseAddrPort(v.c.Cluster.Bind); err == nil {
		own[ap.Addr().Unmap()] = "cluster.bind"
	}
	for i, hp := range v.c.Cluster.HeartbeatPaths {
		if ap, err := netip.ParseAddrPort(hp.Bind); err == nil {
			own[ap.Addr().Unmap()] = "cluster.heartbeat_paths[" + strconv.Itoa(i) + "].bind"
		}
	}
	for i, s := range v.c.Failover.VIPs {
		f := strings.Fields(s) // "198.18.0.100/24", or with "dev IFACE" after it
		if len(f) == 0 {
			continue
		}
		p, err := netip.ParsePrefix(f[0])
		if err != nil {
			continue // reported by failover()
		}
		if key, ok := own[p.Addr().Unmap()]; ok {
			v.add("failover.vips["+strconv.Itoa(i)+"]",
				"%s is this box's own address (%s): a VIP must be an address only the master holds, or its release would delete the box's address", p.Addr(), key)
		}
	}
}

// runAs checks that every run_as user exists, so a typo is found by
// validate, not by the first failed check.
func (v *validator) runAs() {
	check := func(key, name string) {
		if name == "" {
			return
		}
		if _, err := user.Lookup(name); err == nil {
			return
		}
		if _, err := strconv.Atoi(name); err == nil {
			if _, err := user.LookupId(name); err == nil {
				return
			}
		}
		v.add(key, "no such user %q on this box", name)
	}
	check("failover.notify_run_as", v.c.Failover.NotifyRunAs)
	for i, c := range v.c.Clusters {
		if c.HealthCheck != nil {
			check("clusters["+strconv.Itoa(i)+"].health_check.run_as", c.HealthCheck.RunAs)
		}
	}
}

// APIAdminGroupID returns the gid of node.api_admin_group, -1 when it is
// empty (see APIGroupID).
func (n Node) APIAdminGroupID() (int, error) {
	return Node{APIGroup: n.APIAdminGroup}.APIGroupID()
}

func (v *validator) apiAdminGroup() {
	if v.c.Node.APIAdminGroup == "" {
		return
	}
	if _, err := v.c.Node.APIAdminGroupID(); err != nil {
		v.add("node.api_admin_group", "%v", err)
	}
}

// MaxClusters and MaxServers bound clusters and each cluster's servers:
// replication sends their indexes as 16-bit numbers, which must not wrap;
// cluster index 0xffff tags flow records and the low 16 bits of a nat
// cluster's conntrack mark are its index (0xffff: outbound flows), so
// clusters stay far below.
const (
	MaxClusters = 4096
	MaxServers  = 1 << 16
)

func (v *validator) counts() {
	if n := len(v.c.Clusters); n > MaxClusters {
		v.add("clusters", "%d clusters, at most %d", n, MaxClusters)
	}
	for i, c := range v.c.Clusters {
		if n := len(c.Servers); n > MaxServers {
			v.add("clusters["+strconv.Itoa(i)+"].servers", "%d servers, at most %d", n, MaxServers)
		}
	}
}

// exampleKey is the key printed in configs/example-full.yaml: public, so
// never a real key.
const exampleKey = "tandem-example-key-do-not-use!!!"

// ExampleKeyInUse returns an error when a cluster key is the example key
// of configs/example-full.yaml. It is no config error (the example must
// validate), but a node refuses to run or reload with it: anyone who has
// read the docs holds it.
func (c *Config) ExampleKeyInUse() error {
	keys, err := c.ClusterKeys()
	if err != nil {
		return nil // reported by Validate
	}
	for _, k := range keys {
		if string(k) == exampleKey {
			return errors.New("the cluster key is the example key published in configs/example-full.yaml: generate one with `tandem keygen`")
		}
	}
	return nil
}

// Warnings lists what is valid but unsafe, for validate and run to print:
// the example key, and a config holding a secret, a key file or a
// health check's password file that users other than the owner and
// group may read.
func (c *Config) Warnings() []string {
	var w []string
	if err := c.ExampleKeyInUse(); err != nil {
		w = append(w, err.Error())
	}
	secretInline := c.Cluster.Secret != "" || len(c.Cluster.AcceptSecrets) > 0
	for _, vc := range c.Clusters {
		if vc.HealthCheck != nil && vc.HealthCheck.Secret != "" {
			secretInline = true
		}
	}
	if c.File != "" && secretInline && worldReadable(c.File) {
		w = append(w, fmt.Sprintf("%s holds a secret and others may read it: chmod o-rwx %s", c.File, c.File))
	}
	if f := c.Cluster.SecretFile; f != "" && worldReadable(f) {
		w = append(w, fmt.Sprintf("cluster.secret_file %s: others may read the cluster key: chmod o-rwx %s", f, f))
	}
	for _, vc := range c.Clusters {
		if h := vc.HealthCheck; h != nil && h.PasswordFile != "" && worldReadable(h.PasswordFile) {
			w = append(w, fmt.Sprintf("cluster %s: health_check.password_file %s: others may read the password: chmod o-rwx %s",
				vc.Name, h.PasswordFile, h.PasswordFile))
		}
	}
	return w
}

func worldReadable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().Perm()&0o004 != 0
}
