package node

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/tandem-lb/tandem/dataplane"
	"github.com/tandem-lb/tandem/pkg/api"
	"github.com/tandem-lb/tandem/pkg/config"
)

// accessLogs are the http clusters' access log files, opened once by
// path and shared by the clusters (and the generations of a cluster a
// reload makes) that name it: each line is one write to a file opened
// O_APPEND. They stay open for the node's life.
type accessLogs struct {
	mu    sync.Mutex
	files map[string]*os.File
}

// open returns the writer of an access_log value: nil for "", stdout,
// else the file, created if need be.
func (a *accessLogs) open(path string) (io.Writer, error) {
	switch path {
	case "":
		return nil, nil
	case "stdout":
		return os.Stdout, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if f := a.files[path]; f != nil {
		return f, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	if a.files == nil {
		a.files = map[string]*os.File{}
	}
	a.files[path] = f
	return f, nil
}

// buildHTTP makes the http cluster of rt: its cookie keys come from the
// cluster keys (so both boxes sign alike), its source-IP persistence is
// rt's sticky table.
func (n *Node) buildHTTP(cfg *config.Config, rt *vcluster, opts dataplane.Options) error {
	vc := rt.cfg
	keys, err := cfg.ClusterKeys()
	if err != nil {
		return fmt.Errorf("cluster keys: %w", err)
	}
	ho := dataplane.HTTPOptions{Sticky: opts.Sticky, CookieKeys: dataplane.CookieKeys(keys, vc.Name)}
	if p := vc.Persistence; p != nil && p.Mode == config.PersistenceCookie && p.Fallback == "none" {
		ho.Sticky = nil // the table still exists (and replicates) but is not consulted
	}
	if vc.HTTP != nil {
		if ho.AccessLog, err = n.accessLogs.open(vc.HTTP.AccessLog); err != nil {
			return fmt.Errorf("cluster %s: %w", vc.Name, err)
		}
	}
	rt.http, err = dataplane.NewHTTPCluster(vc, rt.pool, ho, n.log.With("component", "dataplane"))
	if err != nil {
		return err
	}
	rt.ln = rt.http
	return nil
}

// reloadHTTPCerts re-reads the certificates of a cluster a reload keeps
// and says what changed; a file that cannot be loaded keeps the running
// certificate and is reported.
func (n *Node) reloadHTTPCerts(c *vcluster) []string {
	if c.http == nil {
		return nil
	}
	changed, err := c.http.ReloadCertificates()
	switch {
	case err != nil:
		n.log.Error("reload: certificates not reloaded; the running ones stay", "cluster", c.cfg.Name, "err", err)
		return []string{fmt.Sprintf("cluster %s: certificates NOT reloaded: %v", c.cfg.Name, err)}
	case changed:
		n.events.add("reload", "%s: certificates reloaded", c.cfg.Name)
		return []string{fmt.Sprintf("cluster %s: certificates reloaded", c.cfg.Name)}
	}
	return nil
}

// setHTTPCookieKeys hands rotated cluster keys to the http clusters.
func (n *Node) setHTTPCookieKeys(keys [][]byte) {
	g := n.gen()
	if g == nil {
		return
	}
	for _, c := range g.clusters {
		if c.http != nil {
			c.http.SetCookieKeys(dataplane.CookieKeys(keys, c.cfg.Name))
		}
	}
}

// httpStatus fills the status of an http cluster and returns its
// servers' stats.
func httpStatus(c *vcluster, ac *api.Cluster) ([]dataplane.ServerStats, map[string]*api.ServerHTTP) {
	st := c.http.Stats()
	ac.ActiveConns, ac.TotalConns, ac.Serving, ac.Refused = st.Active, st.Total, st.Serving, st.Refused
	h := &api.HTTPStatus{Requests: st.Requests, Status: st.Status, LatencyMeanMs: ms(st.MeanLatency),
		Smuggling: st.Smuggling, TooLarge: st.TooLarge, NoServer: st.NoServer, BadGateway: st.BadGateway,
		Timeouts: st.Timeouts, Retries: st.Retries, Malformed: st.Malformed, HeaderTooLarge: st.HeaderTooLarge}
	bounds := dataplane.LatencyBounds()
	for i, n := range st.Latency {
		b := api.LatencyBucket{Count: n}
		if i < len(bounds) {
			b.LeMs = ms(bounds[i])
		}
		h.Latency = append(h.Latency, b)
	}
	now := time.Now()
	for _, ci := range st.Certificates {
		h.Certificates = append(h.Certificates, api.Certificate{File: ci.File, Names: ci.Names, NotAfter: ci.NotAfter,
			ExpiresInDays: int(ci.NotAfter.Sub(now).Hours() / 24), Warning: ci.Warning})
	}
	ac.HTTP = h
	per := make(map[string]*api.ServerHTTP, len(st.ServerRequests))
	for name, r := range st.ServerRequests {
		per[name] = &api.ServerHTTP{Requests: r.Requests, Status: r.Status, LatencyMeanMs: ms(r.MeanLatency)}
	}
	return st.Servers, per
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
