//go:build !linux

package dataplane

import (
	"context"
	"net/netip"
)

// uloop has no implementation off Linux.
type uloop struct{ counters udpCounters }

func (c *UDPCluster) listen() ([]*uloop, netip.AddrPort, error) {
	return nil, netip.AddrPort{}, errUDPUnsupported
}

func (c *UDPCluster) serve(ctx context.Context, loops []*uloop) error { return errUDPUnsupported }

func fdBudget() int64 { return DefaultMaxFlows }

// UDPParking reports why flows cannot park their sockets: they never can
// off Linux.
func UDPParking() error { return errUDPUnsupported }
