// Package node is Tandem's composition root: it builds the peer transport,
// the VIP manager, the election loop, the notify hook and the control API
// from a config, wires them together and runs them under one context.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tandem-lb/tandem/failover"
	"github.com/tandem-lb/tandem/pkg/api"
	"github.com/tandem-lb/tandem/pkg/config"
	"github.com/tandem-lb/tandem/pkg/metrics"
	"github.com/tandem-lb/tandem/pkg/notify"
	"github.com/tandem-lb/tandem/pkg/peer"
	"github.com/tandem-lb/tandem/pkg/replicate"
	"github.com/tandem-lb/tandem/pkg/vip"
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
	ownMAC  atomic.Pointer[string]
	witness *witness
	// conflicts are boxes other than the peer announcing our VIPs.
	conflicts conflictLog

	events eventLog

	engine engine
	// engineRunning is set once engine.Run was started (at Run, or by
	// the reload that added the first cluster).
	engineRunning bool
	repl          *replicate.Replicator // nil without persistence or nat clusters
	nat           *natState             // nil without nat clusters
	started       time.Time

	// reload serialises reloads and owns the goroutines they start.
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
	// witnessLost and witnessBack follow the witness for the health
	// settling after it answers again.
	witnessLost bool
	witnessBack time.Time
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
		notify:  notify.New(f.Notify, cfg.Node.Name, log.With("component", "notify")),
		rivals:  vip.NewRivalWatcher(f.Interface, f.PrefixesOn(f.Interface)),
		witness: newWitness(),
	}
	n.notify.SetRunAs(f.NotifyRunAs)
	n.loop = failover.NewLoop(electionConfig(cfg), failover.RealClock{}, n, log.With("component", "election"))
	if cfg.HasNAT() {
		if n.nat, err = newNATState(cfg, log.With("component", "nat")); err != nil {
			vm.Close()
			return nil, err
		}
		n.nat.flows.onNew = n.natNewFlow
	}
	clusters, err := n.buildClusters(cfg, nil)
	if err != nil {
		return nil, err
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
	ln, err := n.listenAPI()
	if err != nil {
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
			return fmt.Errorf("remove leftover nat rules: %w", err)
		}
		defer n.nat.close()
	}

	if err := n.listenClusters(); err != nil {
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

	g, gctx := errgroup.WithContext(others)
	links := make(chan vip.LinkEvent, 16)
	g.Go(func() error { return vip.WatchCarrier(gctx, n.gen().cfg.Failover.TrackInterfaces, links, n.log) })
	g.Go(func() error { n.forwardLinks(gctx, links); return nil })
	g.Go(func() error { n.forwardAdverts(gctx); return nil })
	sightings := make(chan vip.Sighting, 64)
	g.Go(func() error {
		return n.rivals.Run(gctx, sightings, func(mac net.HardwareAddr) {
			s := mac.String()
			n.ownMAC.Store(&s)
		}, n.log.With("component", "vip"))
	})
	g.Go(func() error { n.forwardRivals(gctx, sightings); return nil })
	g.Go(func() error {
		return n.runWitness(gctx, n.witness,
			func() string { return n.gen().cfg.Failover.Witness },
			func() time.Duration { return n.gen().cfg.Failover.AdvertInterval / 2 })
	})
	g.Go(func() error { n.notify.Run(gctx); return nil })
	g.Go(func() error { every(gctx, reconcileEvery, func() { n.reconcile(gctx) }); return nil })
	g.Go(func() error { return api.Serve(gctx, ln, api.Handler(n, n, n), n.log) })
	if n.nat != nil {
		g.Go(func() error { return n.nat.run(gctx) })
	}
	if n.repl != nil {
		g.Go(func() error { return n.repl.Run(gctx) })
		g.Go(func() error { every(gctx, expireEvery, n.expireSticky); return nil })
	}
	if addr := n.gen().cfg.Node.MetricsListen; addr != "" {
		g.Go(func() error { return metrics.Serve(gctx, addr, n, n.log) })
	}
	n.runClusters(gctx, g)
	n.startReloads(gctx)

	// Warm before master: holds are posted before the election starts.
	n.started = time.Now()
	n.refreshHolds()
	g.Go(func() error { n.manageHolds(gctx); return nil })

	electionDone := make(chan error, 1)
	go func() { electionDone <- n.loop.Run(electionCtx) }()
	g.Go(func() error { n.serviceManager(gctx, ctx); return nil })

	var runErr error
	select {
	case <-ctx.Done():
	case <-gctx.Done():
		// A part failed: step down before exiting.
		runErr = g.Wait()
		if runErr == nil {
			runErr = errors.New("a component stopped unexpectedly")
		}
	}
	stopElection()
	<-electionDone
	// No reload from here on: the clusters are what drains.
	n.stopReloads()
	// Not master any more: new connections are refused; let the
	// established ones finish.
	n.setServing(false)
	n.drainClusters(context.WithoutCancel(ctx))
	if err := n.peer.Leave(time.Second); err != nil {
		n.log.Warn("leave", "err", err)
	}
	cancelOthers()
	if err := g.Wait(); err != nil && runErr == nil && !errors.Is(err, context.Canceled) {
		runErr = err
	}
	n.reload.wg.Wait()
	if err := n.peer.Shutdown(); err != nil {
		n.log.Warn("peer shutdown", "err", err)
	}
	// Belt and braces: whatever happened, no VIP stays behind.
	if err := n.vips.Release(); err != nil {
		n.log.Warn("release VIPs", "err", err)
	}
	return runErr
}

func (n *Node) forwardLinks(ctx context.Context, links <-chan vip.LinkEvent) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-links:
			if ev.Up {
				// Packets sent while the cable was out left unresolved
				// neighbours; resolve afresh so adverts flow at once.
				if k, err := vip.FlushUnresolved(ev.Iface); err != nil {
					n.log.Debug("flush unresolved neighbours", "iface", ev.Iface, "err", err)
				} else if k > 0 {
					n.log.Debug("flushed unresolved neighbours", "iface", ev.Iface, "count", k)
				}
			}
			n.loop.Post(failover.Link{Iface: ev.Iface, Up: ev.Up})
		}
	}
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
			n.noteLateAdvert(prev, r)
			// Holds that depend on this advert (drift, sync) first.
			n.refreshHolds()
			n.loop.Post(failover.Advert{Node: r.Advert.Node, Priority: r.Advert.Priority, State: st, Held: r.Advert.Held})
		}
	}
}

// forwardRivals hands other boxes' announcements of our VIPs to the
// election, and reports the first of each streak.
func (n *Node) forwardRivals(ctx context.Context, in <-chan vip.Sighting) {
	var lastMAC string
	var lastAt time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-in:
			own := ""
			if p := n.ownMAC.Load(); p != nil {
				own = *p
			}
			mac := s.MAC.String()
			peerMAC := n.peerMAC()
			// While the peer is heard its own announcements (a master
			// whose adverts were late announces alone) are routine;
			// they matter, and are reported, only when it is silent.
			// Anyone else's are address conflicts.
			m := n.loop.Snapshot()
			silent := m.Peer.LastHeard.IsZero() || s.At.Sub(m.Peer.LastHeard) > 3*n.loop.Config().AdvertInterval/2
			if mac != peerMAC {
				n.noteConflict(s, peerMAC, m.State)
			} else if silent && (mac != lastMAC || s.At.Sub(lastAt) > failover.RivalHold) {
				n.log.Info("another box announces a VIP while the peer is silent", "vip", s.VIP.String(), "mac", mac,
					"state", m.State.String())
				n.events.add("rival", "%s announced %s while the peer is silent (this node %s)", mac, s.VIP, m.State)
				lastMAC, lastAt = mac, s.At
			}
			n.loop.Post(failover.Rival{VIP: s.VIP.String(), MAC: mac, OwnMAC: own, PeerMAC: peerMAC})
		}
	}
}

// noteLateAdvert warns when adverts arrive late or with gaps: the usual
// cause of a flapping pair (a saturated box, a congested link).
func (n *Node) noteLateAdvert(prev, r peer.Received) {
	interval := n.gen().cfg.Failover.AdvertInterval
	if !r.Advert.Sent.IsZero() {
		if lat := r.At.Sub(r.Advert.Sent); lat > 2*interval {
			n.log.Warn("late advert", "peer", r.Advert.Node, "seq", r.Advert.Seq, "latency_ms", lat.Milliseconds())
		}
	}
	if prev.Advert.Node == r.Advert.Node && !prev.Advert.Sent.IsZero() && r.Advert.Seq == prev.Advert.Seq+1 {
		if gap := r.Advert.Sent.Sub(prev.Advert.Sent); gap > 2*interval {
			n.log.Warn("peer sent adverts late", "peer", r.Advert.Node, "seq", r.Advert.Seq, "gap_ms", gap.Milliseconds())
		}
	}
	if prev.Advert.Node == r.Advert.Node && r.Advert.Seq > prev.Advert.Seq+1 {
		n.log.Warn("adverts lost", "peer", r.Advert.Node, "missing", r.Advert.Seq-prev.Advert.Seq-1)
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
			Held: len(m.Holds) > 0, MAC: n.ownHW(),
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
