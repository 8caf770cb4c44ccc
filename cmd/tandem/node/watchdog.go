package node

import (
	"context"
	"time"

	"github.com/tandem-lb/tandem/pkg/sdnotify"
)

// liveness tells whether the election loop is alive: it sends an advert
// every advert interval in every state (BACKUP, MASTER and FAULT alike),
// through Perform, which counts them in n.seq. A loop that is stuck (a
// deadlock, a netlink call that never returns) stops counting.
type liveness struct {
	lastSeq     uint64
	lastAdvance time.Time
}

// alive records seq at now and reports whether it advanced within window.
func (l *liveness) alive(seq uint64, now time.Time, window time.Duration) bool {
	if seq != l.lastSeq || l.lastAdvance.IsZero() {
		l.lastSeq, l.lastAdvance = seq, now
	}
	return now.Sub(l.lastAdvance) <= window
}

// serviceManager talks to systemd when the node runs under it (Type=notify):
// READY=1 once started, WATCHDOG=1 while the election loop is alive (see
// liveness; a stuck node is then killed by the service manager, and the
// unit's ExecStopPost releases its VIPs), and STOPPING=1 once stop (the
// node's own context) ends. It returns when ctx ends.
func (n *Node) serviceManager(ctx, stop context.Context) {
	if ok, err := sdnotify.Notify(sdnotify.Ready); err != nil {
		n.log.Warn("systemd notify", "err", err)
	} else if !ok {
		return // not under a service manager
	}
	wd := sdnotify.WatchdogInterval()
	period := wd / 3
	if wd == 0 {
		period = time.Second // only to notice stop
	}
	window := max(wd/2, 5*n.gen().cfg.Failover.AdvertInterval)
	var l liveness
	stopping := false
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if stop.Err() != nil && !stopping {
			stopping = true
			sdnotify.Notify(sdnotify.Stopping)
		}
		if wd == 0 {
			continue
		}
		n.mu.Lock()
		seq := n.seq
		n.mu.Unlock()
		// A node that is stopping has ended its election on purpose;
		// TimeoutStopSec bounds the rest.
		if stopping || l.alive(seq, time.Now(), window) {
			sdnotify.Notify(sdnotify.Watchdog)
		} else {
			n.log.Error("election loop stalled: no advert sent lately; not feeding the systemd watchdog",
				"since", l.lastAdvance.Format(time.RFC3339Nano))
		}
	}
}
