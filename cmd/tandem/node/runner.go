package node

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// clusterRunner owns every goroutine that runs the clusters, whether Run
// or a reload started it: the proxy engine's loop, each cluster's accept
// loop and health checks, and the drains of replaced clusters. Run waits
// for all of them (wait) before it returns.
//
// One error policy: a cluster whose accept loop fails stops the node
// (failed), which steps down first, as when any other part fails: a box
// that cannot serve a cluster it is configured for must not hold the
// VIPs, and its peer can.
type clusterRunner struct {
	mu sync.Mutex
	// ctx is Run's, under which clusters start; nil before Run has
	// opened the runner and once it is stopping.
	ctx           context.Context
	engineRunning bool
	wg            sync.WaitGroup
	// failed carries the first failure of an accept loop to Run.
	failed chan error
	log    *slog.Logger
}

func newClusterRunner(log *slog.Logger) *clusterRunner {
	return &clusterRunner{failed: make(chan error, 1), log: log}
}

// open lets the runner start goroutines under ctx.
func (r *clusterRunner) open(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ctx = ctx
}

// close refuses further starts (the node is stopping).
func (r *clusterRunner) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ctx = nil
}

// context is the context clusters start under; nil while they may not.
func (r *clusterRunner) context() context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ctx
}

// startEngine runs the proxy engine's loop, once: at Run, or when a
// reload adds the first cluster.
func (r *clusterRunner) startEngine(e engine) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx == nil || r.engineRunning {
		return
	}
	r.engineRunning = true
	ctx := r.ctx
	r.wg.Go(func() { e.Run(ctx) })
}

// serve starts c's accept loop and health checks (on both boxes: the
// standby is warm when it takes over) under a context of c's own, so a
// reload can stop it alone (halt).
func (r *clusterRunner) serve(c *vcluster) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx == nil {
		return
	}
	cctx := c.start(r.ctx)
	r.wg.Go(func() {
		defer close(c.served)
		if err := c.ln.Serve(cctx); err != nil {
			r.log.Error("cluster stopped: the node steps down", "cluster", c.cfg.Name, "err", err)
			select {
			case r.failed <- fmt.Errorf("cluster %s: %w", c.cfg.Name, err):
			default: // the node is stopping already
			}
		}
	})
	if c.mon != nil {
		r.wg.Go(func() { c.mon.Run(cctx) })
	}
	if c.agent != nil {
		r.wg.Go(func() { c.agent.Run(cctx) })
	}
}

// drain lets the established connections of a cluster that stopped
// accepting finish in the background, for drainTimeout at most.
func (r *clusterRunner) drain(c *vcluster) {
	r.mu.Lock()
	defer r.mu.Unlock()
	base := r.ctx
	if base == nil {
		base = context.Background()
	}
	r.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(base), drainTimeout)
		defer cancel()
		c.ln.Drain(ctx)
		r.log.Debug("replaced cluster drained", "cluster", c.cfg.Name)
	})
}

// wait waits for every goroutine the runner started; call it after close
// and once their context has ended.
func (r *clusterRunner) wait() { r.wg.Wait() }
