// Package node is Tandem's composition root: it builds the peer transport,
// the VIP manager, the election loop, the notify hook and the control API
// from a config, wires them together and runs them under one context.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tandem-lb/tandem/failover"
	"github.com/tandem-lb/tandem/pkg/api"
	"github.com/tandem-lb/tandem/pkg/config"
	"github.com/tandem-lb/tandem/pkg/ctsync"
	"github.com/tandem-lb/tandem/pkg/metrics"
	"github.com/tandem-lb/tandem/pkg/notify"
	"github.com/tandem-lb/tandem/pkg/peer"
	"github.com/tandem-lb/tandem/pkg/replicate"
	"github.com/tandem-lb/tandem/pkg/vip"
	"github.com/tandem-lb/tandem/pkg/witness"
)

// keepTransitions is how many transitions status shows (CONTRACT: ≥ 32).
const keepTransitions = 64

// reconcileEvery is the period of the master's check that its VIPs are
// still on the interface.
const reconcileEvery = 500 * time.Millisecond

// Node is one running box of the pair.
type Node struct {
	// cur is the running config and its clusters; a reload swaps it
	// whole (see generation), so readers take one consistent snapshot.
	cur     atomic.Pointer[generation]
	log     *slog.Logger
	version string

	peer   *peer.Transport
	vips   *vipGroup
	loop   *failover.Loop
	notify *notify.Runner
	// rivals watches the VIP interface for other boxes announcing our
	// VIPs; witness pings failover.witness.
	rivals  *vip.RivalWatcher
	witness *witness.Witness
	// feed hands the rivals' sightings to the election; it knows this
	// box's hardware address and keeps the address conflicts (boxes
	// other than the peer announcing our VIPs).
	feed *rivalFeed

	events eventLog

	engine engine
	// runner owns the goroutines that run the clusters.
	runner *clusterRunner
	repl   *replicate.Replicator // nil without persistence or nat clusters
	nat    *natState             // nil without nat clusters
	// accessLogs are the http clusters' access log files.
	accessLogs accessLogs
	started    time.Time

	// reload serialises reloads.
	reload reloadState
	// servingMu orders setServing with a reload's swap of the clusters, so
	// a cluster added by a reload never misses a "serve" or "stop".
	servingMu sync.Mutex
	serving   bool

	mu               sync.Mutex
	transitions      []api.Transition
	transitionsTotal uint64
	lastAdvert       peer.Received
	lastSync         string
	seq              uint64
	// holdMem is the hold policy's memory (failover.Config.Holds).
	holdMem failover.HoldMemory
}

// New builds a node; nothing is opened until Run.
func New(cfg *config.Config, version string, log *slog.Logger) (*Node, error) {
	keys, err := cfg.ClusterKeys() // the primary first, then the accepted ones
	if err != nil {
		return nil, fmt.Errorf("cluster key: %w", err)
	}
	if err := cfg.ExampleKeyInUse(); err != nil {
		return nil, err
	}
	f := cfg.Failover
	var paths []peer.Path
	for _, hp := range cfg.Cluster.HeartbeatPaths {
		paths = append(paths, peer.Path{Bind: hp.Bind, Peer: hp.Peer})
	}
	tr, err := peer.New(peer.Config{
		NodeName:       cfg.Node.Name,
		Bind:           cfg.Cluster.Bind,
		Peers:          cfg.Cluster.Peers,
		Paths:          paths,
		Keys:           keys,
		Insecure:       cfg.Cluster.Insecure,
		Label:          cfg.Cluster.Label,
		AdvertInterval: f.AdvertInterval,
		Logger:         log.With("component", "peer"),
	})
	if err != nil {
		return nil, fmt.Errorf("peer transport: %w", err)
	}
	vm, err := newVIPGroup(f, log.With("component", "vip"))
	if err != nil {
		return nil, fmt.Errorf("vip manager: %w", err)
	}
	vm.SetStateFiles(cfg.Node.APISocket)
	n := &Node{
		log:     log,
		version: version,
		events:  eventLog{node: cfg.Node.Name},
		peer:    tr,
		vips:    vm,
		runner:  newClusterRunner(log.With("component", "dataplane")),
		notify:  notify.New(f.Notify, cfg.Node.Name, log.With("component", "notify")),
		rivals:  vip.NewRivalWatcher(f.Interface, f.PrefixesOn(f.Interface)),
		witness: witness.New(witness.NewICMP(), log.With("component", "witness")),
	}
	n.notify.SetRunAs(f.NotifyRunAs)
	n.loop = failover.NewLoop(electionConfig(cfg), failover.RealClock{}, n, log.With("component", "election"))
	n.feed = &rivalFeed{loop: n.loop, log: log, events: &n.events, peerMAC: n.peerMAC}
	if cfg.HasNAT() {
		if n.nat, err = newNATState(cfg, &n.events, log.With("component", "nat")); err != nil {
			vm.Close()
			return nil, err
		}
		n.nat.flows.onNew = func(f ctsync.Flow) { n.nat.newFlow(n.gen().clusters, f) }
	}
	var clusters []*vcluster // nothing is bound yet
	for ci := range cfg.Clusters {
		c, err := n.buildCluster(cfg, ci)
		if err != nil {
			return nil, err
		}
		clusters = append(clusters, c)
	}
	n.cur.Store(newGeneration(cfg, clusters))
	n.reload.keys = keys
	if err := n.buildReplication(keys); err != nil {
		return nil, err
	}
	return n, nil
}

// electionConfig is the election's part of a config.
func electionConfig(cfg *config.Config) failover.Config {
	f := cfg.Failover
	return failover.Config{
		Node:           cfg.Node.Name,
		Priority:       uint8(f.Priority),
		Preempt:        f.Preempt,
		PreemptDelay:   f.PreemptDelay,
		AdvertInterval: f.AdvertInterval,
		Track:          f.TrackInterfaces,
		HoldAfterFault: hasHealthChecks(cfg),
		LinkHoldDown:   f.LinkHoldDown,
		Overlap:        failover.DefaultOverlap(f.AdvertInterval),
	}
}

// hasHealthChecks reports whether some cluster checks its servers.
func hasHealthChecks(cfg *config.Config) bool {
	for _, c := range cfg.Clusters {
		if c.HealthCheck != nil {
			return true
		}
	}
	return false
}

// Run runs the node until ctx ends, then steps down: a master sends a
// priority-0 advert and releases its VIPs before the node leaves the
// member list, so the peer takes over at once.
func (n *Node) Run(ctx context.Context) error {
	// The control socket first: a second node started with the same
	// config stops here, before it touches the running node's VIPs.
	ln, err := listenAPI(n.gen().cfg.Node, n.log.With("component", "api"))
	if err != nil {
		return err
	}
	web, err := n.newConsole(n.gen().cfg.Node) // nil without node.web_listen
	if err != nil {
		ln.Close()
		return err
	}
	// A crash may have left VIPs on the interface; never start with them,
	// nor with a VIP that is the box's own address.
	if err := n.vips.Cleanup(); err != nil {
		ln.Close()
		return fmt.Errorf("VIPs at start: %w", err)
	}
	defer n.vips.Close()
	if n.nat != nil {
		// Rules left by a crash are replaced whole, sticky maps included;
		// whatever happens from here, none stays behind.
		if err := n.nat.rules.Remove(); err != nil {
			ln.Close()
			return fmt.Errorf("remove leftover nat rules: %w", err)
		}
		defer n.nat.close()
	}

	if err := n.gen().listen(); err != nil {
		ln.Close()
		return err
	}
	if err := n.peer.Start(ctx); err != nil {
		ln.Close()
		return fmt.Errorf("start peer transport: %w", err)
	}

	// The election stops first (its Stop step needs the transport and
	// the VIP manager), then everything else.
	electionCtx, stopElection := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElection()
	others, cancelOthers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelOthers()

	// (The start-up grace counts from here; set before any goroutine
	// that evaluates the holds.)
	n.started = time.Now()
	g, gctx := errgroup.WithContext(others)
	links := make(chan vip.LinkEvent, 16)
	g.Go(func() error { return vip.WatchCarrier(gctx, n.gen().cfg.Failover.TrackInterfaces, links, n.log) })
	g.Go(func() error { forwardLinks(gctx, links, n.loop, n.log); return nil })
	g.Go(func() error { n.forwardAdverts(gctx); return nil })
	sightings := make(chan vip.Sighting, 64)
	g.Go(func() error { return n.rivals.Run(gctx, sightings, n.feed.own, n.log.With("component", "vip")) })
	g.Go(func() error { n.feed.run(gctx, sightings); return nil })
	g.Go(func() error {
		return n.witness.Run(gctx,
			func() string { return n.gen().cfg.Failover.Witness },
			func() time.Duration { return n.gen().cfg.Failover.AdvertInterval / 2 })
	})
	g.Go(func() error { n.notify.Run(gctx); return nil })
	g.Go(func() error { every(gctx, reconcileEvery, func() { n.reconcile(gctx) }); return nil })
	control := api.Handler(api.Deps{Status: n, Servers: n, Persistence: n, Switchover: n, Reload: n, Events: n})
	g.Go(func() error { return api.Serve(gctx, ln, control, n.log) })
	if n.nat != nil {
		g.Go(func() error { return n.nat.run(gctx) })
	}
	if n.repl != nil {
		g.Go(func() error { return n.repl.Run(gctx) })
		g.Go(func() error { every(gctx, expireEvery, func() { n.gen().expireSticky() }); return nil })
	}
	if addr := n.gen().cfg.Node.MetricsListen; addr != "" {
		g.Go(func() error { return metrics.Serve(gctx, addr, n, n.log) })
	}
	if web != nil {
		g.Go(func() error { return n.serveConsole(gctx, web, n.gen().cfg.Node) })
	}
	n.startClusters(gctx)

	// Warm before master: holds are posted before the election starts.
	n.refreshHolds()
	g.Go(func() error { every(gctx, holdEvery, n.refreshHolds); return nil })

	electionDone := make(chan error, 1)
	go func() { electionDone <- n.loop.Run(electionCtx) }()
	g.Go(func() error { n.serviceManager(gctx, ctx); return nil })

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-n.runner.failed:
	case <-gctx.Done():
		// A part failed: step down before exiting.
		runErr = g.Wait()
		if runErr == nil {
			runErr = errors.New("a component stopped unexpectedly")
		}
	}
	stopElection()
	<-electionDone
	// No reload from here on (one under way finishes first): the
	// clusters are what drains.
	n.reload.mu.Lock()
	n.runner.close()
	n.reload.mu.Unlock()
	// Not master any more: new connections are refused; let the
	// established ones finish.
	n.setServing(false)
	n.gen().drain(context.WithoutCancel(ctx))
	if err := n.peer.Leave(time.Second); err != nil {
		n.log.Warn("leave", "err", err)
	}
	cancelOthers()
	if err := g.Wait(); err != nil && runErr == nil && !errors.Is(err, context.Canceled) {
		runErr = err
	}
	n.runner.wait()
	if err := n.peer.Shutdown(); err != nil {
		n.log.Warn("peer shutdown", "err", err)
	}
	// Belt and braces: whatever happened, no VIP stays behind.
	if err := n.vips.Release(); err != nil {
		n.log.Warn("release VIPs", "err", err)
	}
	return runErr
}

func (n *Node) forwardAdverts(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-n.peer.Adverts():
			st, ok := failover.ParseState(r.Advert.State)
			if !ok {
				n.log.Debug("advert with unknown state dropped", "peer", r.Advert.Node, "state", r.Advert.State)
				continue
			}
			n.mu.Lock()
			prev := n.lastAdvert
			n.lastAdvert = r
			n.mu.Unlock()
			noteLateAdvert(n.log, n.gen().cfg.Failover.AdvertInterval, prev, r)
			// Holds that depend on this advert (drift, sync) first.
			n.refreshHolds()
			n.loop.Post(failover.Advert{Node: r.Advert.Node, Priority: r.Advert.Priority, State: st, Held: r.Advert.Held})
		}
	}
}

// every runs fn every period until ctx ends.
func every(ctx context.Context, period time.Duration, fn func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// reconcile re-adds, while master, a VIP that someone deleted.
func (n *Node) reconcile(ctx context.Context) {
	if n.loop.Snapshot().State != failover.Master {
		return
	}
	readded, err := n.vips.Reconcile(ctx)
	if err != nil {
		n.log.Warn("reconcile VIPs", "err", err)
	}
	for _, p := range readded {
		n.log.Warn("VIP was missing and was re-added", "vip", p.String())
		n.events.add("vip", "%s was missing from %s and was re-added", p, n.gen().cfg.Failover.Interface)
	}
}

// Perform carries out the election's actions (failover.Effector).
func (n *Node) Perform(ctx context.Context, a failover.Action, m failover.Machine) {
	switch a := a.(type) {
	case failover.ClaimVIPs:
		// Serve first, so the first connection after the ARP is taken.
		n.setServing(true)
		if err := n.vips.Claim(ctx); err != nil {
			n.log.Error("claim VIPs", "err", err)
			n.events.add("vip", "claim failed: %v", err)
		} else {
			n.events.add("vip", "claimed %v on %v; %d gratuitous ARP/NA rounds %s apart",
				n.gen().cfg.Failover.VIPs, n.vips.ifaces, max(n.gen().cfg.Failover.GARP.Count, 1), n.gen().cfg.Failover.GARP.Interval)
		}
	case failover.ReleaseVIPs:
		if n.nat != nil {
			n.nat.noteLeftMaster()
		}
		if err := n.vips.Release(); err != nil {
			n.log.Error("release VIPs", "err", err)
			n.events.add("vip", "release failed: %v", err)
		} else {
			n.events.add("vip", "released %v", n.gen().cfg.Failover.VIPs)
		}
		n.setServing(false)
	case failover.Announce:
		if a.Refresh {
			if err := n.vips.AnnounceOnce(ctx); err != nil {
				n.log.Debug("announce VIPs", "err", err)
			}
			return
		}
		n.log.Info("announcing the VIPs again", "reason", a.Reason)
		if err := n.vips.Announce(ctx); err != nil {
			n.log.Warn("announce VIPs", "err", err)
		}
		n.events.add("garp", "announced the VIPs again: %s", a.Reason)
	case failover.SendAdvert:
		n.mu.Lock()
		n.seq++
		seq := n.seq
		n.mu.Unlock()
		now := time.Now()
		err := n.peer.SendAdvert(peer.Advert{
			Node: n.gen().cfg.Node.Name, Priority: a.Priority, State: a.State.String(),
			ConfigHash: n.gen().advertHash, Seq: seq, StateAge: now.Sub(m.Since), Sent: now,
			Held: len(m.Holds) > 0, MAC: n.feed.ownHW(),
		})
		if err != nil {
			n.log.Debug("send advert", "err", err)
		}
	case failover.Transition:
		n.mu.Lock()
		n.transitions = append(n.transitions, api.Transition{
			At: a.At, From: a.From.String(), To: a.To.String(), Reason: a.Reason})
		n.transitionsTotal++
		if len(n.transitions) > keepTransitions {
			n.transitions = n.transitions[len(n.transitions)-keepTransitions:]
		}
		n.mu.Unlock()
		n.notify.Notify(a.To.String())
		n.events.add("transition", "%s -> %s: %s", a.From, a.To, a.Reason)
	}
}
