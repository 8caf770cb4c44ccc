package dataplane

import (
	"fmt"
	"net/netip"

	"github.com/tandem-lb/tandem/pkg/config"
)

// PoolFor builds the pool of a configured cluster: its servers (healthy
// and enabled to begin with) and its balancer.
func PoolFor(vc config.VirtualCluster) (*Pool, error) {
	servers := make([]*Server, 0, len(vc.Servers))
	for i, s := range vc.Servers {
		ap, err := netip.ParseAddrPort(s.Address)
		if err != nil {
			return nil, fmt.Errorf("cluster %s server %s: %w", vc.Name, s.Name, err)
		}
		srv := NewServer(i, s.Name, ap, s.Weight)
		srv.SendProxy = s.SendProxy
		srv.MaxConns = int64(s.MaxConns)
		servers = append(servers, srv)
	}
	algorithm := vc.Algorithm
	if vc.IsNAT() {
		algorithm = RoundRobin // the kernel picks (NATEngine); the pool only keeps the servers' state
	}
	b, err := NewBalancer(algorithm)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", vc.Name, err)
	}
	return NewPool(servers, b), nil
}
