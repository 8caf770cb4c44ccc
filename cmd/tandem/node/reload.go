package node

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
	"github.com/tandem-lb/tandem/pkg/config"
)

// generation is one config and the clusters built from it. It is never
// changed once stored: a reload builds the next one and swaps it in, so
// status, holds, replication and metrics always see a config and the
// clusters that go with it (the cluster index is the replication's).
type generation struct {
	cfg  *config.Config
	hash string
	// advertHash is hash plus per-section hashes, as adverts carry it.
	advertHash string
	clusters   []*vcluster
}

func newGeneration(cfg *config.Config, clusters []*vcluster) *generation {
	return &generation{cfg: cfg, hash: cfg.Hash(), advertHash: advertHash(cfg), clusters: clusters}
}

// gen returns the running generation.
func (n *Node) gen() *generation { return n.cur.Load() }

// reloadState serialises reloads (the goroutines they start belong to
// the node's clusterRunner).
type reloadState struct {
	mu sync.Mutex
	// keys are the running cluster keys, the primary first (see keys.go).
	keys [][]byte
}

// Reload reads the config file again and applies what changed without
// dropping established connections (api.Reloader, SIGHUP). It returns
// what changed, one line each. An invalid file is an *api.ReloadError
// listing every problem; a change that needs a restart is refused; in
// both cases the node runs on unchanged.
func (n *Node) Reload() ([]string, error) {
	n.reload.mu.Lock()
	defer n.reload.mu.Unlock()
	base := n.runner.context()
	if base == nil {
		return nil, errors.New("the node is starting or stopping: nothing reloaded")
	}
	old := n.gen()
	cfg, err := config.Load(old.cfg.File)
	if err != nil {
		re := &api.ReloadError{Msg: fmt.Sprintf("%s: %v; the running config is kept", old.cfg.File, err)}
		var probs config.Errors
		if errors.As(err, &probs) {
			re.Msg = fmt.Sprintf("%s: %d problem(s); the running config is kept", old.cfg.File, len(probs))
			for _, p := range probs {
				re.Problems = append(re.Problems, p.String())
			}
		}
		n.log.Warn("reload refused", "err", re.Msg)
		n.events.add("reload", "refused: %s", re.Msg)
		return nil, re
	}
	if err := n.needsRestart(old.cfg, cfg); err != nil {
		n.log.Warn("reload refused", "err", err)
		n.events.add("reload", "refused: %v", err)
		return nil, err
	}
	if err := cfg.ExampleKeyInUse(); err != nil {
		n.log.Warn("reload refused", "err", err)
		n.events.add("reload", "refused: %v", err)
		return nil, err
	}

	keyChanges, err := n.reloadKeys(cfg)
	if err != nil {
		n.log.Error("reload failed", "err", err)
		n.events.add("reload", "failed: %v", err)
		return nil, err
	}
	changes, err := n.reloadClusters(old, cfg)
	changes = append(keyChanges, changes...)
	if err != nil {
		n.log.Error("reload failed", "err", err)
		n.events.add("reload", "failed: %v", err)
		return nil, err
	}
	changes = append(changes, n.reloadFailover(base, old.cfg, cfg)...)
	short := func(h string) string {
		return strings.TrimPrefix(h, "sha256:")[:min(8, len(strings.TrimPrefix(h, "sha256:")))]
	}
	what := "no change"
	if len(changes) > 0 {
		what = strings.Join(changes, "; ")
	}
	n.log.Info("config reloaded", "from", short(old.hash), "to", short(n.gen().hash), "changes", what)
	n.events.add("reload", "config %s -> %s: %s", short(old.hash), short(n.gen().hash), what)
	if changes == nil {
		changes = []string{}
	}
	return changes, nil
}

// needsRestart refuses the changes a running node cannot apply.
func (n *Node) needsRestart(old, cfg *config.Config) error {
	var keys []string
	keys = append(keys, changedKeys("node", old.Node, cfg.Node)...)
	for _, k := range changedKeys("cluster", old.Cluster, cfg.Cluster) {
		// The keys are applied live (reloadKeys), unless the pair
		// switches between encrypted and insecure.
		if !slices.Contains(keyFields, k) {
			keys = append(keys, k)
		}
	}
	for _, k := range changedKeys("failover", old.Failover, cfg.Failover) {
		// The interface, the carrier watch and the transport's heartbeat
		// period are set up once at start.
		if k == "failover.interface" || k == "failover.track_interfaces" || k == "failover.advert_interval" {
			keys = append(keys, k)
		}
	}
	if !slices.Equal(old.Failover.VIPInterfaces(), cfg.Failover.VIPInterfaces()) {
		keys = append(keys, "the interfaces of failover.vips")
	}
	if old.HasNAT() != cfg.HasNAT() {
		keys = append(keys, "mode: nat (the first or the last nat cluster sets up or removes the kernel's forwarding and connection-state replication, at start-up only)")
	}
	if n.repl == nil {
		for i, vc := range cfg.Clusters {
			if vc.Persistence != nil {
				keys = append(keys, fmt.Sprintf("clusters[%d].persistence (%s: the first cluster with persistence starts replication, at start-up only)", i, vc.Name))
				break
			}
		}
	}
	if len(keys) > 0 {
		return fmt.Errorf("restart needed: %s changed; nothing reloaded", strings.Join(keys, ", "))
	}
	return keysNeedRestart(n.reload.keys, cfg)
}

// changedKeys names the fields of two structs that differ, as
// prefix.<mapstructure key>.
func changedKeys(prefix string, a, b any) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := range va.NumField() {
		f := va.Type().Field(i)
		if !f.IsExported() || reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			continue
		}
		key, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if key == "" || key == "-" {
			key = strings.ToLower(f.Name)
		}
		if prefix != "" {
			key = prefix + "." + key
		}
		out = append(out, key)
	}
	return out
}

// reloadClusters applies the clusters of cfg, by name: an unchanged
// cluster keeps its runtime; an added one is built and started; a changed
// one is built and started beside the old one (SO_REUSEPORT: the port
// never stops accepting), then the old one stops accepting; a removed one
// stops accepting. Established connections of replaced and removed
// clusters finish in the background (drainTimeout at most). On an error
// nothing changes, except a UDP cluster stopped to free its port.
func (n *Node) reloadClusters(old *generation, cfg *config.Config) ([]string, error) {
	oldBy := map[string]*vcluster{}
	for _, c := range old.clusters {
		oldBy[c.cfg.Name] = c
	}
	var (
		changes  []string
		next     = make([]*vcluster, len(cfg.Clusters))
		fresh    []*vcluster // built by this reload
		replaced []*vcluster // old runtimes to stop
		stopped  = map[*vcluster]bool{}
	)
	kept := map[string]bool{}
	for ci, vc := range cfg.Clusters {
		if oc := oldBy[vc.Name]; oc != nil && reflect.DeepEqual(oc.cfg, vc) {
			next[ci] = oc
			kept[vc.Name] = true
			changes = append(changes, n.reloadHTTPCerts(oc)...)
		}
	}
	for _, c := range old.clusters {
		if !kept[c.cfg.Name] {
			replaced = append(replaced, c)
		}
	}
	fail := func(err error) ([]string, error) {
		for _, c := range fresh {
			c.close()
		}
		return nil, err
	}
	for ci, vc := range cfg.Clusters {
		if next[ci] != nil {
			continue
		}
		rt, err := n.buildCluster(cfg, ci)
		if err != nil {
			return fail(fmt.Errorf("cluster %s: %w", vc.Name, err))
		}
		oc := oldBy[vc.Name]
		if oc != nil {
			carryOver(oc, rt)
			changes = append(changes, fmt.Sprintf("cluster %s changed (%s)", vc.Name,
				strings.Join(changedKeys("", oc.cfg, vc), ",")))
		} else {
			changes = append(changes, fmt.Sprintf("cluster %s added (%s %s:%d)", vc.Name, vc.Protocol, vc.VIP, vc.Port))
		}
		if err := rt.ln.Listen(); err != nil {
			// A UDP socket without SO_REUSEPORT holds its port alone:
			// stop the old cluster on the same address first.
			holder := sameListener(replaced, vc)
			if holder == nil || stopped[holder] {
				return fail(fmt.Errorf("cluster %s: %w", vc.Name, err))
			}
			holder.halt()
			stopped[holder] = true
			n.log.Warn("reload: stopped the old cluster first to free its port", "cluster", holder.cfg.Name)
			if err := rt.ln.Listen(); err != nil {
				return fail(fmt.Errorf("cluster %s (old cluster %s already stopped): %w", vc.Name, holder.cfg.Name, err))
			}
		}
		rt.bound = true
		fresh = append(fresh, rt)
		next[ci] = rt
	}
	for _, c := range old.clusters {
		if !slices.ContainsFunc(cfg.Clusters, func(vc config.VirtualCluster) bool { return vc.Name == c.cfg.Name }) {
			changes = append(changes, fmt.Sprintf("cluster %s removed", c.cfg.Name))
		}
	}

	// Start the new runtimes, then swap them in with the serving state.
	if len(fresh) > 0 {
		// (The node may have started without clusters.)
		n.runner.startEngine(n.engine)
	}
	for _, rt := range fresh {
		n.runner.serve(rt)
	}
	n.servingMu.Lock()
	for _, rt := range fresh {
		rt.ln.SetActive(n.serving)
	}
	for ci, c := range next {
		if c.sticky != nil {
			c.sticky.cluster.Store(uint32(ci))
		}
		if c.nat != nil {
			c.nat.SetIndex(ci)
		}
	}
	if n.nat != nil {
		_ = n.nat.engine.Sync() // marks of moved clusters; logged by the engine
	}
	n.cur.Store(newGeneration(cfg, next))
	n.servingMu.Unlock()

	// The old runtimes stop accepting (the kernel moves their queued
	// connections to the new listener) and drain in the background.
	for _, c := range replaced {
		c.halt()
		if c.nat != nil {
			// A changed nat cluster's new runtime took its place in the
			// rules already; a removed one leaves them now. Its flows go
			// on in the kernel until they end.
			if err := c.nat.Close(); err != nil {
				n.log.Error("reload: nat rules of a removed cluster", "cluster", c.cfg.Name, "err", err)
			}
		}
		n.runner.drain(c)
	}
	n.publishCerts() // renewed certificates reach the peer (certsync.go)
	return changes, nil
}

// sameListener returns the cluster of list that listens where vc does.
func sameListener(list []*vcluster, vc config.VirtualCluster) *vcluster {
	for _, c := range list {
		if c.cfg.VIP == vc.VIP && c.cfg.Port == vc.Port && c.cfg.Protocol == vc.Protocol {
			return c
		}
	}
	return nil
}

// halt ends the cluster's accept loop (which closes its listener) and
// health checks, and waits (a little) for the accept loop to return.
func (c *vcluster) halt() {
	if c.stop == nil {
		return
	}
	c.stop()
	select {
	case <-c.served:
	case <-time.After(2 * time.Second):
	}
}

// close frees the listener of a cluster built by a failed reload.
func (c *vcluster) close() {
	if !c.bound {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Serve closes the listener when its context ends.
	_ = c.ln.Serve(ctx)
}

// carryOver gives a changed cluster's new runtime what the old one
// learnt: the health verdict and admin state of every server whose name
// and address are unchanged, and the sticky table when persistence and
// the server list (names, in order: the table stores indexes) are the
// same.
func carryOver(oc, rt *vcluster) {
	for _, s := range rt.pool.Servers() {
		if o := oc.pool.Server(s.Name); o != nil && o.Addr == s.Addr {
			s.SetHealthy(o.Healthy())
			s.SetAdmin(o.Admin())
			if rt.cfg.Agent != nil { // until the new monitor's first poll
				s.SetAgentLoad(o.AgentLoad())
			}
		}
	}
	rt.pool.Refresh()
	if oc.sticky == nil || rt.sticky == nil || !reflect.DeepEqual(oc.cfg.Persistence, rt.cfg.Persistence) {
		return
	}
	names := func(c *vcluster) []string {
		var out []string
		for _, s := range c.pool.Servers() {
			out = append(out, s.Name)
		}
		return out
	}
	if slices.Equal(names(oc), names(rt)) {
		rt.sticky.m = oc.sticky.m
	}
}

// reloadFailover applies the election settings, the VIPs, the
// announcements and the notify hook.
func (n *Node) reloadFailover(ctx context.Context, old, cfg *config.Config) []string {
	var changes []string
	of, nf := old.Failover, cfg.Failover
	if ec := electionConfig(cfg); !reflect.DeepEqual(ec, electionConfig(old)) {
		if !n.loop.SetConfig(ec) {
			n.log.Error("reload: the election queue is full; election settings not changed")
		}
		for _, k := range changedKeys("failover", of, nf) {
			if k == "failover.priority" || k == "failover.preempt" || k == "failover.preempt_delay" {
				changes = append(changes, k)
			}
		}
		if hasHealthChecks(cfg) != hasHealthChecks(old) {
			changes = append(changes, "hold after fault (health checks)")
		}
	}
	if !slices.Equal(of.VIPs, nf.VIPs) || of.GARP != nf.GARP {
		if err := n.vips.SetVIPs(ctx, nf); err != nil {
			n.log.Error("reload: VIPs", "err", err)
			n.events.add("vip", "reload: %v", err)
		}
		n.rivals.SetVIPs(nf.PrefixesOn(nf.Interface))
		if !slices.Equal(of.VIPs, nf.VIPs) {
			changes = append(changes, fmt.Sprintf("failover.vips %v -> %v", of.VIPs, nf.VIPs))
		}
		if of.GARP != nf.GARP {
			changes = append(changes, "failover.garp")
		}
	}
	if of.Notify != nf.Notify {
		n.notify.SetPath(nf.Notify)
		changes = append(changes, fmt.Sprintf("failover.notify %q -> %q", of.Notify, nf.Notify))
	}
	if of.NotifyRunAs != nf.NotifyRunAs {
		n.notify.SetRunAs(nf.NotifyRunAs)
		changes = append(changes, fmt.Sprintf("failover.notify_run_as %q -> %q", of.NotifyRunAs, nf.NotifyRunAs))
	}
	return changes
}
