// Package metrics exposes a node's status as Prometheus metrics on
// node.metrics_listen. Values are read from the node's status at scrape
// time, so the hot paths keep their plain atomic counters and pay nothing
// for metrics.
package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandem-lb/tandem/pkg/api"
)

// States are the election states a node reports, one gauge each.
var States = []string{"INIT", "BACKUP", "MASTER", "FAULT"}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("tandem_"+name, help, labels, nil)
}

var (
	dState        = desc("state", "1 for the node's current election state.", "state")
	dPriority     = desc("priority", "The node's configured priority.")
	dTransitions  = desc("transitions_total", "Election state transitions since start.")
	dVIPHeld      = desc("vip_held", "1 when this node holds the VIP.", "vip")
	dPeerAlive    = desc("peer_alive", "1 while the peer's adverts arrive.", "peer")
	dPeerHeard    = desc("peer_last_heard_seconds", "Seconds since the peer's last advert (-1: never).", "peer")
	dPeerMatch    = desc("peer_config_match", "1 when the peer's config hash matches this node's.", "peer")
	dAdvSent      = desc("adverts_sent_total", "Adverts sent.")
	dAdvRecv      = desc("adverts_received_total", "Adverts received.")
	dAdvDropped   = desc("packets_dropped_total", "Peer packets dropped, by reason.", "reason")
	dClActive     = desc("cluster_active_connections", "Open client connections.", "cluster")
	dClTotal      = desc("cluster_connections_total", "Client connections accepted and proxied.", "cluster")
	dClBytes      = desc("cluster_bytes_total", "Bytes proxied; direction in is client to server.", "cluster", "direction")
	dClDatagrams  = desc("cluster_datagrams_total", "UDP datagrams relayed; direction in is client to server.", "cluster", "direction")
	dClParked     = desc("cluster_parked_flows", "Live UDP flows whose upstream socket is parked in io_uring (no descriptor).", "cluster")
	dClRefused    = desc("cluster_refused_total", "Connections refused, by reason.", "cluster", "reason")
	dClServing    = desc("cluster_serving", "1 while this node accepts the cluster's connections.", "cluster")
	dSrvUp        = desc("server_up", "1 when the server's health check passes.", "cluster", "server")
	dSrvAdmin     = desc("server_admin", "1 for the server's admin state.", "cluster", "server", "state")
	dSrvActive    = desc("server_active_connections", "Open connections to the server.", "cluster", "server")
	dSrvTotal     = desc("server_connections_total", "Connections sent to the server.", "cluster", "server")
	dSrvFailures  = desc("server_connect_failures_total", "Connects to the server that failed.", "cluster", "server")
	dSrvCheckLat  = desc("server_check_latency_seconds", "Latency of the last health check.", "cluster", "server")
	dPersEntries  = desc("persistence_entries", "Entries in the sticky table.")
	dPersSent     = desc("persistence_sent_total", "Sticky entries sent to the peer.")
	dPersReceived = desc("persistence_received_total", "Sticky entries received from the peer.")
	dPersLag      = desc("persistence_lag_seconds", "Publish-to-acknowledgement time of the last replicated update.")
	dPersSync     = desc("persistence_sync_state", "1 for the replication's state with the peer.", "state")
	dCTEntries    = desc("conntrack_entries", "Connection-tracking entries of nat clusters on this box (its own as master, the peer's as backup).")
	dCTSent       = desc("conntrack_flows_sent_total", "Conntrack flow records published to the peer.")
	dCTApplied    = desc("conntrack_flows_applied_total", "Conntrack flow records of the peer written into this box's table.")
	dCTErrors     = desc("conntrack_flow_errors_total", "Flow records not applied, and conntrack operations that failed, by reason.", "reason")
	dCTOverflows  = desc("conntrack_event_overflows_total", "Times the kernel's event socket overflowed (each forces a full resync).")
	dARPFrames    = desc("arp_frames_total", "ARP frames read on the VIP interface by the split-brain watch, by result.", "result")
	dRivals       = desc("rival_announcements_total", "Gratuitous ARPs for our VIPs from another box.")
	dWitnessUp    = desc("witness_reachable", "1 while failover.witness answers.", "witness")
)

// Collector turns a status into metrics.
type Collector struct {
	src api.StatusSource
}

// NewCollector reads src at every scrape.
func NewCollector(src api.StatusSource) *Collector { return &Collector{src: src} }

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dState, dPriority, dTransitions, dVIPHeld, dPeerAlive, dPeerHeard,
		dPeerMatch, dAdvSent, dAdvRecv, dAdvDropped, dClActive, dClTotal, dClBytes, dClDatagrams, dClParked, dClRefused, dClServing,
		dSrvUp, dSrvAdmin, dSrvActive, dSrvTotal, dSrvFailures, dSrvCheckLat, dPersEntries, dPersSent, dPersReceived, dPersLag, dPersSync,
		dARPFrames, dRivals, dWitnessUp} {
		ch <- d
	}
	for _, d := range httpDescs {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect reads the status once and sends every metric.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Status()
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	for _, s := range States {
		gauge(dState, b2f(st.State == s), s)
	}
	gauge(dPriority, float64(st.Priority))
	counter(dTransitions, float64(st.TransitionsTotal))
	for _, v := range st.VIPs {
		gauge(dVIPHeld, b2f(v.Held), v.Address)
	}
	for _, p := range st.Peers {
		name := p.Name
		if name == "" {
			name = p.Address
		}
		gauge(dPeerAlive, b2f(p.Alive), name)
		heard := -1.0
		if p.LastHeardMs >= 0 {
			heard = float64(p.LastHeardMs) / 1000
		}
		gauge(dPeerHeard, heard, name)
		gauge(dPeerMatch, b2f(p.ConfigMatch), name)
	}
	counter(dAdvSent, float64(st.Adverts.Sent))
	counter(dAdvRecv, float64(st.Adverts.Received))
	for reason, n := range st.Adverts.Dropped {
		counter(dAdvDropped, float64(n), reason)
	}
	sb := st.SplitBrain
	counter(dARPFrames, float64(sb.ARPRead-sb.ARPMalformed), "ok")
	counter(dARPFrames, float64(sb.ARPMalformed), "malformed")
	counter(dRivals, float64(sb.Rivals))
	if w := sb.Witness; w != nil {
		gauge(dWitnessUp, b2f(w.Reachable), w.Address)
	}
	for _, cl := range st.Clusters {
		gauge(dClActive, float64(cl.ActiveConns), cl.Name)
		counter(dClTotal, float64(cl.TotalConns), cl.Name)
		counter(dClBytes, float64(cl.BytesIn), cl.Name, "in")
		counter(dClBytes, float64(cl.BytesOut), cl.Name, "out")
		gauge(dClServing, b2f(cl.Serving), cl.Name)
		collectHTTP(ch, cl)
		if cl.Protocol == "udp" {
			counter(dClDatagrams, float64(cl.DatagramsIn), cl.Name, "in")
			counter(dClDatagrams, float64(cl.DatagramsOut), cl.Name, "out")
			gauge(dClParked, float64(cl.ParkedFlows), cl.Name)
		}
		for reason, n := range cl.Refused {
			counter(dClRefused, float64(n), cl.Name, reason)
		}
		for _, s := range cl.Servers {
			gauge(dSrvUp, b2f(s.Healthy), cl.Name, s.Name)
			for _, a := range []string{"enabled", "draining", "disabled"} {
				gauge(dSrvAdmin, b2f(s.Admin == a), cl.Name, s.Name, a)
			}
			gauge(dSrvActive, float64(s.ActiveConns), cl.Name, s.Name)
			counter(dSrvTotal, float64(s.TotalConns), cl.Name, s.Name)
			counter(dSrvFailures, float64(s.ConnectFailures), cl.Name, s.Name)
			gauge(dSrvCheckLat, s.LastCheckLatency/1000, cl.Name, s.Name)
		}
	}
	gauge(dPersEntries, float64(st.Persistence.Entries))
	counter(dPersSent, float64(st.Persistence.Sent))
	counter(dPersReceived, float64(st.Persistence.Received))
	if p := st.Persistence; p.State != "" && (p.ConntrackEntries > 0 || p.FlowsSent > 0 || p.FlowsApplied > 0 || len(p.FlowErrors) > 0) {
		gauge(dCTEntries, float64(p.ConntrackEntries))
		counter(dCTSent, float64(p.FlowsSent))
		counter(dCTApplied, float64(p.FlowsApplied))
		counter(dCTOverflows, float64(p.FlowOverflows))
		for reason, n := range p.FlowErrors {
			counter(dCTErrors, float64(n), reason)
		}
	}
	if st.Persistence.Enabled || st.Persistence.State != "" {
		gauge(dPersLag, st.Persistence.LagMs/1000)
		for _, state := range []string{"IN SYNC", "SYNCING", "NOT SYNCED"} {
			gauge(dPersSync, b2f(st.Persistence.State == state), state)
		}
	}
}

// Handler serves /metrics for src, with Go runtime and process metrics.
func Handler(src api.StatusSource) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(src), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// Serve answers /metrics on addr until ctx ends. An address without a
// host (":9110") binds 127.0.0.1 only: the metrics show the pair's
// state, servers and traffic, which is nobody else's business. An
// explicit host that is not loopback is allowed, with a warning at start.
// The limits of api.Serve apply.
func Serve(ctx context.Context, addr string, src api.StatusSource, log *slog.Logger) error {
	bind, exposed, err := ListenAddr(addr)
	if err != nil {
		return fmt.Errorf("metrics listen %s: %w", addr, err)
	}
	l, err := net.Listen("tcp", bind)
	if err != nil {
		return fmt.Errorf("metrics listen %s: %w", bind, err)
	}
	if exposed {
		log.Warn("metrics are reachable beyond this host: anyone who can connect reads the pair's state; bind 127.0.0.1 or firewall the port",
			"addr", l.Addr().String())
	}
	log.Info("metrics listening", "addr", l.Addr().String())
	return api.Serve(ctx, l, Handler(src), log)
}

// ListenAddr returns the address Serve binds for node.metrics_listen: a
// missing host becomes 127.0.0.1. exposed reports a host that may be
// reachable from other machines: any address but a loopback one, and any
// name but localhost.
func ListenAddr(addr string) (bind string, exposed bool, err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false, err
	}
	switch ip := net.ParseIP(host); {
	case host == "":
		return net.JoinHostPort("127.0.0.1", port), false, nil
	case host == "localhost":
		return addr, false, nil
	case ip != nil:
		return addr, !ip.IsLoopback(), nil
	}
	return addr, true, nil
}
