// Package notify runs the operator's hook on every state transition, as
// keepalived's notify script: `NOTIFY STATE NODE`. Calls are queued and
// run one at a time, in order, in a goroutine of their own, so a slow
// script never blocks the election.
package notify

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-lb/tandem/pkg/proc"
)

// queueLen bounds the backlog; a hook that falls this far behind loses
// the oldest news last, and the drops are counted.
const queueLen = 64

// DefaultTimeout bounds one run of the hook.
const DefaultTimeout = 30 * time.Second

// Runner runs the hook.
type Runner struct {
	path    atomic.Pointer[string]
	runAs   atomic.Pointer[string]
	node    string
	timeout time.Duration
	log     *slog.Logger
	queue   chan string

	runs, failures, dropped atomic.Uint64
	startOnce               sync.Once
	done                    chan struct{}
}

// New returns a runner for the executable at path ("" disables it).
func New(path, node string, log *slog.Logger) *Runner {
	r := &Runner{node: node, timeout: DefaultTimeout, log: log,
		queue: make(chan string, queueLen), done: make(chan struct{})}
	r.SetPath(path)
	return r
}

// SetPath replaces the hook's executable ("" disables it), for a config
// reload; calls already queued run the new one.
func (r *Runner) SetPath(path string) { r.path.Store(&path) }

// SetRunAs makes the hook run as another user (a name or a uid; "" for
// the daemon's), from the next call on.
func (r *Runner) SetRunAs(user string) { r.runAs.Store(&user) }

// maxOutput bounds the hook's output kept for the log.
const maxOutput = 4 << 10

// Run executes queued calls until ctx ends, then returns after the
// running call (if any) has finished; calls still queued are run first
// when they fit in a short grace period, so a stop's last transition is
// reported.
func (r *Runner) Run(ctx context.Context) {
	defer close(r.done)
	for {
		select {
		case state := <-r.queue:
			r.exec(context.WithoutCancel(ctx), state)
		case <-ctx.Done():
			deadline := time.Now().Add(2 * time.Second)
			for time.Now().Before(deadline) {
				select {
				case state := <-r.queue:
					r.exec(context.WithoutCancel(ctx), state)
				default:
					return
				}
			}
			return
		}
	}
}

// Done is closed when Run has returned.
func (r *Runner) Done() <-chan struct{} { return r.done }

// Notify queues a call for a new state; it never blocks.
func (r *Runner) Notify(state string) {
	if *r.path.Load() == "" {
		return
	}
	select {
	case r.queue <- state:
	default:
		r.dropped.Add(1)
		r.log.Warn("notify queue full, call dropped", "state", state)
	}
}

func (r *Runner) exec(ctx context.Context, state string) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	path := *r.path.Load()
	if path == "" {
		return
	}
	var runAs string
	if p := r.runAs.Load(); p != nil {
		runAs = *p
	}
	// A clean environment, normal scheduling, no capabilities, bounded
	// output, and its whole process group killed at the timeout.
	res := proc.Run(ctx, proc.Command{Path: path, Args: []string{"NOTIFY", state, r.node},
		RunAs: runAs, MaxOutput: maxOutput})
	r.runs.Add(1)
	if err := res.Err; err != nil || res.TimedOut {
		if res.TimedOut {
			err = fmt.Errorf("killed after %s", r.timeout)
		}
		r.failures.Add(1)
		r.log.Warn("notify hook failed", "state", state, "err", err, "output", res.Output)
		return
	}
	r.log.Debug("notify hook ran", "state", state)
}

// Stats counts runs, failures and dropped calls.
func (r *Runner) Stats() (runs, failures, dropped uint64) {
	return r.runs.Load(), r.failures.Load(), r.dropped.Load()
}
