package node

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/tandem-lb/tandem/dataplane"
	"github.com/tandem-lb/tandem/failover"
	"github.com/tandem-lb/tandem/pkg/api"
	"github.com/tandem-lb/tandem/pkg/config"
	"github.com/tandem-lb/tandem/pkg/replicate"
)

// expireEvery is the period of the sticky tables' janitor.
const expireEvery = 5 * time.Second

// sticky connects a cluster's sticky map to its pool (the dataplane asks
// by server name, the map stores pool indexes) and to replication: every
// new or changed entry is published to the peer.
type sticky struct {
	// cluster is the index in the clusters, which the peer shares; a
	// reload that moves the cluster updates it.
	cluster atomic.Uint32
	m       *dataplane.StickyMap
	pool    *dataplane.Pool
	publish func(replicate.Entry)
}

// Lookup returns the client's server while its entry lives
// (dataplane.StickyTable).
func (s *sticky) Lookup(client netip.Addr) (string, bool) {
	i, ok := s.m.Lookup(client, time.Now().UnixNano())
	if !ok {
		return "", false
	}
	servers := s.pool.Servers()
	if int(i) >= len(servers) {
		return "", false
	}
	return servers[i].Name, true
}

// Store records where the client went and publishes the entry when it is
// new, moved to another server or its expiry moved far enough.
func (s *sticky) Store(client netip.Addr, server string) {
	srv := s.pool.Server(server)
	if srv == nil {
		return
	}
	e, changed := s.m.Touch(client, uint16(srv.Index), time.Now().UnixNano())
	if changed && s.publish != nil {
		s.publish(replicate.Entry{Cluster: uint16(s.cluster.Load()), Client: e.Client, Server: e.Server, Expires: e.Expires})
	}
}

// newSticky builds the sticky map of a cluster with persistence.
func newSticky(index int, vc config.VirtualCluster, pool *dataplane.Pool) *sticky {
	p := vc.Persistence
	mask4, mask6 := 32, 128
	if vip, err := netip.ParseAddr(vc.VIP); err == nil && vip.Unmap().Is4() {
		mask4 = p.Mask
	} else {
		mask6 = p.Mask
	}
	s := &sticky{m: dataplane.NewStickyMap(mask4, mask6, p.Timeout), pool: pool}
	s.m.SetMax(dataplane.DefaultStickyMax)
	s.cluster.Store(uint32(index))
	return s
}

// stickyStore is the replication's view of every cluster's sticky map
// (replicate.Store).
type stickyStore struct{ n *Node }

// Apply stores an entry from the peer in its cluster's map.
func (s stickyStore) Apply(e replicate.Entry) {
	if e.Flow != "" {
		if s.n.nat != nil {
			s.n.nat.flows.apply(e.Flow)
		}
		return
	}
	clusters := s.n.gen().clusters
	if int(e.Cluster) >= len(clusters) {
		return
	}
	st := clusters[e.Cluster].sticky
	if st == nil || int(e.Server) >= len(st.pool.Servers()) {
		return
	}
	expires := e.Expires
	if p := clusters[e.Cluster].cfg.Persistence; p != nil {
		expires = clampExpiry(expires, time.Now().UnixNano(), p.Timeout)
	}
	se := dataplane.StickyEntry{Client: e.Client, Server: e.Server, Expires: expires}
	st.m.Apply(se)
	if c := clusters[e.Cluster]; c.nat != nil {
		s.n.nat.stickyApplied(c, se)
	}
}

// clampExpiry bounds a peer's entry to this node's own timeout: an entry
// can never need to live longer than timeout from now, and a peer with a
// clock far ahead (or a bug) must not pin a client for good.
func clampExpiry(expires, now int64, timeout time.Duration) int64 {
	return min(expires, now+int64(timeout))
}

// Snapshot visits every live entry of every cluster.
func (s stickyStore) Snapshot(fn func(replicate.Entry) bool) {
	if s.n.nat != nil && !s.n.nat.flows.snapshot(fn) {
		return
	}
	now := time.Now().UnixNano()
	for _, c := range s.n.gen().clusters {
		if c.sticky == nil {
			continue
		}
		stop := false
		idx := uint16(c.sticky.cluster.Load())
		c.sticky.m.Range(func(e dataplane.StickyEntry) bool {
			if e.Expires <= now {
				return true
			}
			if !fn(replicate.Entry{Cluster: idx, Client: e.Client, Server: e.Server, Expires: e.Expires}) {
				stop = true
				return false
			}
			return true
		})
		if stop {
			return
		}
	}
}

// syncAddr is the replication address that goes with a memberlist
// address: the same IP, the next port (7946 → 7947).
func syncAddr(hostport string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p >= 65535 {
		return "", fmt.Errorf("port %q", port)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+1)), nil
}

// buildReplication sets up the replicator when a cluster has persistence.
// keys are the cluster keys, the primary first (none when insecure).
func (n *Node) buildReplication(keys [][]byte) error {
	any := n.nat != nil // conntrack entries travel on the same stream
	for _, c := range n.gen().clusters {
		any = any || c.sticky != nil
	}
	if !any {
		return nil
	}
	listen, err := syncAddr(n.gen().cfg.Cluster.Bind)
	if err != nil {
		return fmt.Errorf("replication address: %w", err)
	}
	peer, err := syncAddr(n.gen().cfg.Cluster.Peers[0])
	if err != nil {
		return fmt.Errorf("replication peer address: %w", err)
	}
	var key []byte
	if len(keys) > 0 {
		key = keys[0]
	}
	r, err := replicate.New(replicate.Config{
		Node: n.gen().cfg.Node.Name, Listen: listen, Peer: peer, Key: key, Insecure: n.gen().cfg.Cluster.Insecure,
		AcceptKeys: keys[min(1, len(keys)):],
		ConfigHash: n.gen().hash, Logger: n.log.With("component", "replicate"),
	}, stickyStore{n})
	if err != nil {
		return fmt.Errorf("replication: %w", err)
	}
	n.repl = r
	r.OnBlob(n.applyPeerCert) // https clusters' certificates (certsync.go)
	n.publishCerts()
	if n.nat != nil {
		f := n.nat.flows
		f.publish, f.resync = r.Publish, r.Resync
		f.master = func() bool { return n.loop.Snapshot().State == failover.Master }
	}
	for _, c := range n.gen().clusters {
		if c.sticky != nil {
			c.sticky.publish = r.Publish
		}
	}
	return nil
}

// expireSticky removes expired entries (run every expireEvery).
func (g *generation) expireSticky() {
	now := time.Now().UnixNano()
	for _, c := range g.clusters {
		if c.sticky != nil {
			c.sticky.m.Expire(now)
		}
	}
}

// persistenceStatus sums the sticky tables and the health of the
// replication (repl, nil without it) and of the nat clusters' conntrack
// sync (nat, nil without them).
func (g *generation) persistenceStatus(repl *replicate.Replicator, nat *natState) api.Persistence {
	var p api.Persistence
	for _, c := range g.clusters {
		if c.sticky != nil {
			p.Entries += uint64(c.sticky.m.Len())
			p.TableFull += c.sticky.m.Full()
			p.Enabled = true
		}
	}
	if repl == nil {
		return p
	}
	st := repl.Status()
	p.Sent, p.Received, p.Acked = st.Sent, st.Received, st.Acked
	p.State, p.Reason, p.Peer = st.State, st.Reason, st.Peer
	p.PeerConnected, p.BulkDone = st.PeerConnected, st.BulkDone
	p.LagMs = st.LagMs
	p.LastBulkEntries = st.LastBulkEntries
	p.LastBulkMs = float64(st.LastBulkDuration.Microseconds()) / 1000
	p.Resyncs, p.Queued, p.Dropped = st.Resyncs, st.Queued, st.Dropped
	if nat != nil {
		f := nat.flows
		p.ConntrackEntries = f.liveCounts().total
		p.ConntrackInSync = st.State == replicate.StateInSync
		p.FlowsSent, p.FlowsApplied, p.FlowOverflows = f.sent.Load(), f.applied.Load(), f.overflows.Load()
		p.FlowErrors = f.errors()
	}
	return p
}

// StickyEntries lists up to top entries of a cluster ("" for all), most
// recently refreshed first (api.PersistenceAdmin).
func (n *Node) StickyEntries(cluster string, top int) ([]api.StickyEntry, error) {
	now := time.Now()
	var out []api.StickyEntry
	found := false
	for _, c := range n.gen().clusters {
		if cluster != "" && c.cfg.Name != cluster {
			continue
		}
		found = true
		if c.sticky == nil {
			continue
		}
		servers := c.pool.Servers()
		for _, e := range c.sticky.m.Top(top, now.UnixNano()) {
			name := ""
			if int(e.Server) < len(servers) {
				name = servers[e.Server].Name
			}
			out = append(out, api.StickyEntry{Cluster: c.cfg.Name, Client: e.Client.String(), Server: name,
				ExpiresInMs: time.Unix(0, e.Expires).Sub(now).Milliseconds()})
		}
	}
	if !found {
		return nil, fmt.Errorf("no cluster %q: %w", cluster, api.ErrNotFound)
	}
	return out, nil
}

// FlushSticky empties a cluster's sticky table (api.PersistenceAdmin).
func (n *Node) FlushSticky(cluster string) (int, error) {
	for _, c := range n.gen().clusters {
		if c.cfg.Name != cluster {
			continue
		}
		if c.sticky == nil {
			return 0, nil
		}
		k := c.sticky.m.Flush()
		if sk, ok := n.nat.sticky(c); ok {
			if err := sk.FlushSticky(c.cfg.Name); err != nil {
				return k, fmt.Errorf("cluster %s: flush the kernel's sticky map: %w", cluster, err)
			}
		}
		n.log.Info("sticky table flushed", "cluster", cluster, "entries", k)
		return k, nil
	}
	return 0, fmt.Errorf("no cluster %q: %w", cluster, api.ErrNotFound)
}
