package node

import (
	"context"
	"fmt"
	"github.com/tandem-lb/tandem/internal/sched"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-lb/tandem/dataplane"
	"github.com/tandem-lb/tandem/pkg/api"
	"github.com/tandem-lb/tandem/pkg/config"
	"github.com/tandem-lb/tandem/pkg/ctsync"
)

// natRules is the kernel's netfilter table of Tandem (pkg/nft): the nat
// engine writes it; the node removes it on stop.
type natRules interface {
	dataplane.NATKernel
	// Remove deletes the table; no error when it is absent.
	Remove() error
}

// natState is the node's part of the nat clusters: the engine that keeps
// the kernel's rules in step with the pools, and the conntrack sync.
type natState struct {
	rules  natRules
	engine *dataplane.NATEngine
	flows  *flowSync
	log    *slog.Logger
	events *eventLog
	// leftMaster (cap 1) wakes run's liberate when the box stops being
	// master.
	leftMaster chan struct{}

	// totals counts, per conntrack mark, the new flows this box forwarded
	// as master; servers per (mark, server).
	mu      sync.Mutex
	totals  map[uint32]*atomic.Uint64
	servers map[serverKey]*atomic.Uint64
}

// newNATState opens the kernel's parts for the nat clusters of cfg, after
// checking what they need: forwarding enabled, nf_tables, ctnetlink.
func newNATState(cfg *config.Config, events *eventLog, log *slog.Logger) (*natState, error) {
	if err := checkForwarding(cfg); err != nil {
		return nil, err
	}
	rules, table, err := openNAT(cfg, log)
	if err != nil {
		return nil, err
	}
	s := &natState{
		rules: rules, log: log, events: events, leftMaster: make(chan struct{}, 1),
		totals:  map[uint32]*atomic.Uint64{},
		servers: map[serverKey]*atomic.Uint64{},
	}
	s.engine = dataplane.NewNATEngine(rules, log)
	s.flows = newFlowSync(table, log.With("component", "conntrack"))
	s.flows.onNew = s.count
	return s, nil
}

// natCounters reads the packets the kernel dropped for a nat cluster, by
// reason (allow, max_conns, no_server).
type natCounters interface {
	DropCounters(cluster string) (map[string]uint64, error)
}

// stickyKernel loads persistence entries into the kernel's sticky maps
// (nft.Manager through nftRules).
type stickyKernel interface {
	AddSticky(cluster string, client netip.Prefix, server netip.AddrPort, ttl time.Duration) error
	FlushSticky(cluster string) error
}

// newFlow is told of each new flow this box forwards as master: it counts
// it and, for a cluster with persistence, records the client in the
// cluster's sticky table (clusters are the running ones), which
// replicates it to the peer (whose kernel map gets it through
// stickyApplied).
func (s *natState) newFlow(clusters []*vcluster, f ctsync.Flow) {
	s.count(f)
	idx := int(f.Mark &^ dataplane.NATMarkMask)
	if idx >= len(clusters) {
		return
	}
	c := clusters[idx]
	if c.nat == nil || c.sticky == nil || c.nat.Mark() != f.Mark {
		return
	}
	for _, srv := range c.pool.Servers() {
		if srv.Addr == f.Server() {
			c.sticky.Store(f.Orig.Src.Addr(), srv.Name)
			return
		}
	}
}

// stickyApplied loads a sticky entry the peer replicated into the kernel
// map of its nat cluster, so this box keeps the client on its server once
// it is master.
func (s *natState) stickyApplied(c *vcluster, e dataplane.StickyEntry) {
	k, ok := s.sticky(c)
	servers := c.pool.Servers()
	if !ok || int(e.Server) >= len(servers) {
		return
	}
	ttl := time.Until(time.Unix(0, e.Expires))
	if ttl <= 0 {
		return
	}
	if err := k.AddSticky(c.cfg.Name, e.Client, servers[e.Server].Addr, ttl); err != nil {
		s.flows.countErr("sticky", err)
	}
}

// checkForwarding refuses to start nat clusters on a box that does not
// forward packets: the rules would DNAT them and the kernel would drop
// them. The node does not change the sysctl itself (the box's routing is
// the operator's), it says which one to set.
func checkForwarding(cfg *config.Config) error {
	need := map[string]string{}
	for _, vc := range cfg.Clusters {
		if !vc.IsNAT() {
			continue
		}
		if a, err := netip.ParseAddr(vc.VIP); err == nil && a.Unmap().Is4() {
			need["/proc/sys/net/ipv4/ip_forward"] = "net.ipv4.ip_forward"
		} else {
			need["/proc/sys/net/ipv6/conf/all/forwarding"] = "net.ipv6.conf.all.forwarding"
		}
	}
	var missing []string
	for path, name := range need {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("mode: nat: cannot read %s: %w", name, err)
		}
		if strings.TrimSpace(string(b)) != "1" {
			missing = append(missing, name+"=1")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("mode: nat clusters need packet forwarding: set %s (sysctl -w, and in /etc/sysctl.d to keep it)",
			strings.Join(missing, " and "))
	}
	return nil
}

// count records a new flow forwarded as master.
func (s *natState) count(f ctsync.Flow) {
	s.mu.Lock()
	t := s.totals[f.Mark]
	if t == nil {
		t = &atomic.Uint64{}
		s.totals[f.Mark] = t
	}
	k := serverKey{f.Mark, f.Server()}
	st := s.servers[k]
	if st == nil {
		st = &atomic.Uint64{}
		s.servers[k] = st
	}
	s.mu.Unlock()
	t.Add(1)
	st.Add(1)
}

// total returns the new flows counted for mark, and for a server of it.
func (s *natState) total(mark uint32, server netip.AddrPort) (cluster, srv uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.totals[mark]; t != nil {
		cluster = t.Load()
	}
	if t := s.servers[serverKey{mark, server}]; t != nil {
		srv = t.Load()
	}
	return cluster, srv
}

// run reads conntrack events until ctx ends; it also rewrites this box's
// own flows as liberal whenever it stops being master (see liberate).
func (s *natState) run(ctx context.Context) error {
	done := make(chan struct{})
	go sched.Normal(func() { // rewriting thousands of entries: bulk work
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.leftMaster:
				// Only a peer that was master too publishes while this box
				// is: a brief dual master (late adverts). Its records,
				// acknowledged and never sent again, go in now.
				if k := s.flows.replayDeferred(); k > 0 {
					s.log.Info("wrote the peer's flow records received while master", "records", k)
				}
				if k := s.flows.liberate(); k > 0 {
					s.log.Info("own flows handed to the peer: window tracking off for their return", "flows", k)
				}
			}
		}
	})
	errc := make(chan error, 1)
	go sched.Normal(func() { errc <- s.flows.run(ctx) })
	err := <-errc
	<-done
	return err
}

// noteLeftMaster asks run to liberate this box's flows (never blocks).
func (s *natState) noteLeftMaster() {
	select {
	case s.leftMaster <- struct{}{}:
	default:
	}
}

// close removes Tandem's netfilter table: a stopped node leaves no rule
// behind (the VIPs are gone already, so nothing reaches the rules).
func (s *natState) close() {
	if err := s.rules.Remove(); err != nil {
		s.log.Warn("remove the nat rules", "err", err)
	}
	if c, ok := s.flows.t.(io.Closer); ok {
		_ = c.Close()
	}
}

// clusterStatus fills a nat cluster's status from connection tracking.
func (s *natState) clusterStatus(c *vcluster, ac *api.Cluster) []dataplane.ServerStats {
	counts := s.flows.liveCounts()
	mark := c.nat.Mark()
	ac.Mode = config.ModeNAT
	ac.ActiveConns = counts.byMark[mark]
	ac.TotalConns, _ = s.total(mark, netip.AddrPort{})
	ac.Serving = c.nat.Serving()
	if k, ok := s.rules.(natCounters); ok {
		if counts, err := k.DropCounters(c.cfg.Name); err == nil && len(counts) > 0 {
			ac.Refused = counts
		}
	}
	var out []dataplane.ServerStats
	for _, srv := range c.pool.Servers() {
		_, total := s.total(mark, srv.Addr)
		out = append(out, dataplane.ServerStats{Name: srv.Name, Addr: srv.Addr, Healthy: srv.Healthy(),
			Admin: srv.Admin().String(), Active: counts.byServer[serverKey{mark, srv.Addr}], Total: total})
	}
	return out
}

// cut deletes the flows of a nat cluster's server taken out of rotation
// when the cluster says nat.drain: false. s may be nil (no nat cluster).
func (s *natState) cut(c *vcluster, srv *dataplane.Server, why string) {
	if s == nil || c.nat == nil || c.cfg.NAT.Drains() {
		return
	}
	if k := s.flows.cut(c.nat.Mark(), srv.Addr); k > 0 {
		s.log.Info("flows cut", "cluster", c.cfg.Name, "server", srv.Name, "flows", k, "why", why)
		s.events.add("flows", "%s/%s: %d flows cut (%s, nat.drain: false)", c.cfg.Name, srv.Name, k, why)
	}
}

// sticky returns the kernel's sticky maps when c is a nat cluster. s may
// be nil (no nat cluster).
func (s *natState) sticky(c *vcluster) (stickyKernel, bool) {
	if s == nil || c.nat == nil {
		return nil, false
	}
	k, ok := s.rules.(stickyKernel)
	return k, ok
}
