package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/tandem-lb/tandem/dataplane"
	"github.com/tandem-lb/tandem/healthcheck"
	"github.com/tandem-lb/tandem/pkg/api"
	"github.com/tandem-lb/tandem/pkg/config"
)

// drainTimeout bounds how long a stopping node lets established
// connections finish after it stopped accepting.
const drainTimeout = 10 * time.Second

// listener is what the node does with a cluster of either protocol.
type listener interface {
	Listen() error
	Serve(ctx context.Context) error
	SetActive(on bool)
	Drain(ctx context.Context)
}

// udpFdBudget is how many live UDP flows all UDP clusters may hold by
// descriptor together: each flow holds a socket, and the process's
// descriptors (20,000 on the lab machines) are shared with the TCP side.
// Later flows park their sockets in io_uring (dataplane.UDPParking), up to
// udpParkedBudget; without io_uring udpFdBudget is the cap.
const (
	udpFdBudget     = 15000
	udpParkedBudget = dataplane.DefaultMaxParkedFlows
)

// vcluster is one virtual cluster at run time: its pool, its listener and
// its health monitor.
type vcluster struct {
	cfg  config.VirtualCluster
	pool *dataplane.Pool
	ln   listener
	tcp  *dataplane.TCPCluster // one of tcp, udp and nat is set
	udp  *dataplane.UDPCluster
	nat  *dataplane.NATCluster
	http *dataplane.HTTPCluster // protocol: http (then tcp is nil)
	mon  *healthcheck.Monitor   // nil without health_check
	// agent polls the servers' load agents; nil without agent: (agent.go).
	agent *healthcheck.AgentMonitor
	// sticky is the persistence table; nil without persistence.
	sticky *sticky
	// stop ends the cluster's accept loop (closing its listener) and its
	// health checks, for a reload that removes or replaces it; served is
	// closed once the accept loop has returned.
	stop   context.CancelFunc
	served chan struct{}
	// bound is set once a reload's Listen succeeded.
	bound bool
}

// engine is what the node needs of a proxy engine beyond Engine: a loop
// to run, for the event-loop engine.
type engine interface {
	dataplane.Engine
	Run(ctx context.Context)
}

// goEngine runs nothing of its own.
type goEngine struct{ *dataplane.GoEngine }

func (goEngine) Run(ctx context.Context) { <-ctx.Done() }

// newEngine picks the proxy engine: the epoll event loops on Linux, the
// goroutine engine elsewhere or when TANDEM_ENGINE=go.
func newEngine(log *slog.Logger) (engine, string) {
	if os.Getenv("TANDEM_ENGINE") != "go" {
		if e, err := dataplane.NewEpollEngine(runtime.GOMAXPROCS(0), log); err == nil {
			return e, "epoll"
		} else {
			log.Info("epoll engine unavailable, using goroutines", "err", err)
		}
	}
	return goEngine{dataplane.NewGoEngine(log)}, "go"
}

// ensureEngine makes the proxy engine if there is none yet; it reports
// whether it made one (whose Run the caller must start).
func (n *Node) ensureEngine() bool {
	if n.engine != nil {
		return false
	}
	var name string
	n.engine, name = newEngine(n.log.With("component", "engine"))
	n.log.Info("proxy engine", "engine", name)
	if err := dataplane.UDPParking(); err != nil {
		n.log.Info("UDP flows hold a descriptor each (no io_uring); live UDP flows are capped at the descriptor budget",
			"budget", udpFdBudget, "why", err)
	}
	return true
}

// buildCluster builds cluster ci of cfg: its pool, its listener (not
// bound yet), its sticky map and its health monitor.
func (n *Node) buildCluster(cfg *config.Config, ci int) (*vcluster, error) {
	vc := cfg.Clusters[ci]
	n.ensureEngine()
	udpClusters := 0
	for _, c := range cfg.Clusters {
		if c.Protocol == "udp" {
			udpClusters++
		}
	}
	pool, err := dataplane.PoolFor(vc)
	if err != nil {
		return nil, err
	}
	var targets []healthcheck.Target
	for _, s := range pool.Servers() {
		targets = append(targets, healthcheck.Target{Cluster: vc.Name, Server: s.Name, Addr: s.Addr})
	}
	rt := &vcluster{cfg: vc, pool: pool}
	var opts dataplane.Options
	if vc.Persistence != nil {
		rt.sticky = newSticky(ci, vc, rt.pool)
		if n.repl != nil {
			rt.sticky.publish = n.repl.Publish
		}
		opts.Sticky = rt.sticky
	}
	dlog := n.log.With("component", "dataplane")
	switch {
	case vc.IsNAT():
		if n.nat == nil {
			return nil, fmt.Errorf("cluster %s: mode: nat needs a restart of the node", vc.Name)
		}
		rt.nat, err = dataplane.NewNATCluster(vc, ci, rt.pool, n.nat.engine)
		rt.ln = rt.nat
	case vc.IsHTTP():
		err = n.buildHTTP(cfg, rt, opts)
	case vc.Protocol == "udp":
		rt.udp, err = dataplane.NewUDPCluster(vc, rt.pool, dataplane.UDPOptions{Sticky: opts.Sticky,
			FdFlows: udpFdBudget / udpClusters, MaxFlows: udpParkedBudget / udpClusters}, dlog)
		rt.ln = rt.udp
	default:
		rt.tcp, err = dataplane.NewTCPCluster(vc, rt.pool, n.engine, opts, dlog)
		rt.ln = rt.tcp
	}
	if err != nil {
		return nil, err
	}
	if vc.HealthCheck != nil {
		chk, err := healthcheck.New(*vc.HealthCheck)
		if err != nil {
			return nil, fmt.Errorf("cluster %s health check: %w", vc.Name, err)
		}
		pool := rt.pool
		rt.mon = healthcheck.NewMonitor(chk, *vc.HealthCheck, targets, func(c healthcheck.Change) {
			if s := pool.Server(c.Target.Server); s != nil {
				s.SetHealthy(c.Healthy)
				pool.Refresh()
				if !c.Healthy {
					n.nat.cut(rt, s, "health check failed")
				}
			}
			verdict := "DOWN"
			if c.Healthy {
				verdict = "up"
			}
			if !c.Initial || !c.Healthy {
				n.events.add("health", "%s/%s %s: %s", c.Target.Cluster, c.Target.Server, verdict, c.Result.Detail)
			}
		}, n.log.With("component", "health"))
		if vc.Passive != nil {
			// Each box judges on its own traffic; nothing is replicated.
			rt.mon.SetPassive(*vc.Passive)
			rt.pool.SetPassive(rt.mon.Traffic)
		}
	}
	n.buildAgent(rt)
	return rt, nil
}

// listen binds every cluster's VIP and port (before the VIP exists,
// thanks to IP_FREEBIND), so a failover never waits for a listener. A
// failure here stops the node at start.
func (g *generation) listen() error {
	for _, c := range g.clusters {
		if err := c.ln.Listen(); err != nil {
			return fmt.Errorf("cluster %s: %w", c.cfg.Name, err)
		}
	}
	return nil
}

// tcpMigrateReq is the sysctl that makes the kernel move the connections
// queued on a closing SO_REUSEPORT listener to another listener of the
// same port instead of resetting them (Linux 5.14+).
const tcpMigrateReq = "/proc/sys/net/ipv4/tcp_migrate_req"

// startClusters starts the engine, the accept loops and the health
// checks under the runner, and from then on lets reloads start theirs
// there. It also asks the kernel (best effort) to migrate the queue of a
// listener a reload replaces.
func (n *Node) startClusters(ctx context.Context) {
	// Already on (the package's sysctl.d file sets it at boot): nothing
	// to write, which the unit's ProtectKernelTunables would refuse.
	if b, err := os.ReadFile(tcpMigrateReq); err != nil || strings.TrimSpace(string(b)) != "1" {
		if err := os.WriteFile(tcpMigrateReq, []byte("1"), 0o644); err != nil {
			n.log.Warn("cannot set net.ipv4.tcp_migrate_req: a reload that replaces a TCP cluster may reset connections still queued on its old listener", "err", err)
		}
	}
	n.runner.open(ctx)
	if len(n.gen().clusters) > 0 {
		n.runner.startEngine(n.engine)
	}
	for _, c := range n.gen().clusters {
		n.runner.serve(c)
	}
}

// start gives the cluster its own context under ctx, so a reload can
// stop it alone.
func (c *vcluster) start(ctx context.Context) context.Context {
	cctx, cancel := context.WithCancel(ctx)
	c.stop, c.served = cancel, make(chan struct{})
	return cctx
}

// setServing opens (MASTER) or closes the clusters to new connections.
func (n *Node) setServing(on bool) {
	n.servingMu.Lock()
	defer n.servingMu.Unlock()
	n.serving = on
	for _, c := range n.gen().clusters {
		c.ln.SetActive(on)
	}
}

// drain waits for established connections to finish, drainTimeout at
// most.
func (g *generation) drain(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, drainTimeout)
	defer cancel()
	for _, c := range g.clusters {
		c.ln.Drain(ctx)
	}
}

// SetServerAdmin drains, disables or enables a server (api.ServerAdmin).
func (n *Node) SetServerAdmin(cluster, server, state string) error {
	for _, c := range n.gen().clusters {
		if c.cfg.Name != cluster {
			continue
		}
		s := c.pool.Server(server)
		if s == nil {
			return fmt.Errorf("cluster %s has no server %q: %w", cluster, server, api.ErrNotFound)
		}
		a := map[string]dataplane.Admin{"enabled": dataplane.Enabled, "draining": dataplane.Draining,
			"disabled": dataplane.Disabled}[state]
		s.SetAdmin(a)
		c.pool.Refresh()
		if a == dataplane.Disabled {
			n.nat.cut(c, s, "disabled by the operator")
		}
		n.log.Info("server admin state changed", "cluster", cluster, "server", server, "admin", state)
		n.events.add("admin", "%s/%s %s by the operator", cluster, server, state)
		return nil
	}
	return fmt.Errorf("no cluster %q: %w", cluster, api.ErrNotFound)
}

// clusterStatus reports every cluster and server; nat is the node's nat
// clusters' state.
func (g *generation) clusterStatus(nat *natState) []api.Cluster {
	out := []api.Cluster{}
	for _, c := range g.clusters {
		ac := api.Cluster{Name: c.cfg.Name, VIP: c.cfg.VIP, Port: c.cfg.Port, Protocol: c.cfg.Protocol,
			Algorithm: c.cfg.Algorithm, Mode: c.cfg.Mode}
		var servers []dataplane.ServerStats
		var perHTTP map[string]*api.ServerHTTP
		if c.nat != nil {
			servers = nat.clusterStatus(c, &ac)
		} else if c.http != nil {
			servers, perHTTP = httpStatus(c, &ac)
		} else if c.udp != nil {
			st := c.udp.Stats()
			ac.ActiveConns, ac.TotalConns = st.Flows, st.FlowsTotal
			ac.BytesIn, ac.BytesOut, ac.Serving = st.BytesIn, st.BytesOut, st.Serving
			ac.DatagramsIn, ac.DatagramsOut, ac.Refused = st.DatagramsIn, st.DatagramsOut, st.Drops
			ac.MaxFlows, ac.ParkedFlows = st.MaxFlows, st.Parked
			ac.Retries, ac.Unanswered = st.Retries, st.Unanswered
			servers = st.Servers
		} else {
			st := c.tcp.Stats()
			ac.ActiveConns, ac.TotalConns = st.Active, st.Total
			ac.BytesIn, ac.BytesOut, ac.Serving, ac.Refused = st.BytesIn, st.BytesOut, st.Serving, st.Refused
			servers = st.Servers
		}
		var last map[string]healthcheck.Result
		var reasons map[string]string
		if c.mon != nil {
			last, reasons = c.mon.Last(), c.mon.Reasons()
		}
		var agentLast map[string]healthcheck.AgentReading
		if c.agent != nil {
			agentLast = c.agent.Last()
		}
		for _, s := range servers {
			as := api.Server{Name: s.Name, Address: s.Addr.String(), Healthy: s.Healthy, Admin: s.Admin,
				ActiveConns: s.Active, TotalConns: s.Total, ConnectFailures: s.Failures, HTTP: perHTTP[s.Name]}
			if !s.Healthy {
				as.DownReason = reasons[s.Name]
			}
			if r, ok := last[s.Name]; ok {
				as.LastCheck = r.Detail
				as.LastCheckOK = r.OK
				as.LastCheckLatency = float64(r.Latency.Microseconds()) / 1000
				at := r.At
				as.LastCheckAt = &at
				as.CheckWarning, as.CertExpiresInDays = r.Warning, r.CertDaysLeft(time.Now())
			}
			as.Agent = c.agentStatus(s.Name, agentLast)
			ac.Servers = append(ac.Servers, as)
		}
		out = append(out, ac)
	}
	return out
}
