package config

import (
	"net/netip"
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
