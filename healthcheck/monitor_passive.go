package healthcheck

import (
	"context"
	"fmt"

	"github.com/tandem-lb/tandem/pkg/config"
)

// target is one server's verdict, guarded by Monitor.notifyMu.
type target struct {
	rf    RiseFall
	first bool // no probe result yet
	// passiveDown: the passive judge took the server out (and it has
	// not come back since).
	passiveDown bool
	judge       Passive
	// reason is why the server is down: the Detail of the result that
	// took it out, or the passive judge's reason; "" while up.
	reason string
}

// passiveEvent is one outcome of real traffic on a server.
type passiveEvent struct {
	server string
	ok     bool
	what   string
}

// passiveQueue is how many traffic outcomes may wait for the judge;
// beyond it they are dropped (the run they belong to is long enough).
const passiveQueue = 1024

// SetPassive makes the Monitor also judge its servers on the clients'
// traffic (Passive): Fail failures within Window take a server down at
// once, reported as a Change like any other; the probes bring it back
// after Rise passes. Call it before Run.
func (m *Monitor) SetPassive(p config.Passive) {
	m.passive = &p
	m.passiveCh = make(chan passiveEvent, passiveQueue)
	for _, ts := range m.targetsByName {
		ts.judge = Passive{Fail: p.Fail, Window: p.Window}
	}
}

// Traffic reports one outcome of real traffic on server: ok (an answer,
// a first byte) or a failure named in the plural ("connects refused").
// It never blocks, so the dataplane may call it from its event loops;
// without SetPassive it does nothing.
func (m *Monitor) Traffic(server string, ok bool, what string) {
	if m.passiveCh == nil {
		return
	}
	select {
	case m.passiveCh <- passiveEvent{server, ok, what}:
	default:
	}
}

// Reasons returns why each server that is down is down, by name: the
// last check's detail or the passive judge's reason.
func (m *Monitor) Reasons() map[string]string {
	m.notifyMu.Lock()
	defer m.notifyMu.Unlock()
	out := map[string]string{}
	for name, ts := range m.targetsByName {
		if ts.reason != "" {
			out[name] = ts.reason
		}
	}
	return out
}

// judge folds the traffic outcomes into the verdicts until ctx ends.
func (m *Monitor) judge(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-m.passiveCh:
			m.observe(ev)
		}
	}
}

// observe folds one outcome; a run long enough takes an up server down.
func (m *Monitor) observe(ev passiveEvent) {
	m.notifyMu.Lock()
	defer m.notifyMu.Unlock()
	ts := m.targetsByName[ev.server]
	if ts == nil {
		return
	}
	now := m.now()
	down, reason := ts.judge.Observe(ev.ok, ev.what, now)
	if !down || !ts.rf.Healthy {
		return
	}
	ts.rf.markDown()
	ts.passiveDown = true
	var t Target
	for _, x := range m.targets {
		if x.Server == ev.server {
			t = x
		}
	}
	log := m.log.With("cluster", t.Cluster, "server", t.Server)
	res := Result{OK: false, Detail: reason, At: now}
	log.Info(fmt.Sprintf("server %s down: %s (before the active check)", t.Server, reason), "err", reason)
	ts.reason = reason
	m.onChange(Change{Target: t, Healthy: false, Result: res})
}
