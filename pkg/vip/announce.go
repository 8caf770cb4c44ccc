package vip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// The announcements of the claimed VIPs: gratuitous ARP or unsolicited
// NA bursts, the refreshes, and the rate-limited warnings of failures.

// Announce sends one more burst (Count rounds, the first before it
// returns) for every VIP, e.g. when a split brain resolves in our favour.
// It returns ErrNotClaimed unless the VIPs are claimed.
func (m *Manager) Announce(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.announceable(); err != nil {
		return err
	}
	m.stopAnnouncing()
	return m.burst(ctx)
}

// announceable says why the VIPs cannot be announced now; m.mu held.
func (m *Manager) announceable() error {
	switch {
	case m.closed:
		return ErrClosed
	case !m.claimed:
		return ErrNotClaimed
	}
	return nil
}

// AnnounceOnce sends one round for every VIP, leaving any running burst
// or refresh alone: the repeats of a master alone.
func (m *Manager) AnnounceOnce(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.announceable(); err != nil {
		return err
	}
	return m.round(ctx, m.vips)
}

// burst sends one round now and starts the goroutine for the rest of the
// burst and the refreshes. m.mu must be held and no goroutine running.
func (m *Manager) burst(ctx context.Context) error {
	return m.burstOf(ctx, m.vips)
}

// burstOf is burst for some of the VIPs: the Count rounds go to vips, the
// refreshes to every VIP. m.mu must be held and no goroutine running.
func (m *Manager) burstOf(ctx context.Context, vips []netip.Prefix) error {
	err := m.round(ctx, vips)
	if m.garp.Count <= 1 && m.garp.Refresh <= 0 {
		return err
	}
	bctx, cancel := context.WithCancel(ctx)
	m.stop = cancel
	all, g := m.vips, m.garp
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.background(bctx, g, vips, all)
	}()
	return err
}

// background sends rounds 2..Count for vips, then refreshes all until
// ctx ends. It never takes m.mu, so Release can wait for it while holding
// the lock; it gets the settings as arguments, since SetVIPs may change
// them (after stopping it).
func (m *Manager) background(ctx context.Context, g GARP, vips, all []netip.Prefix) {
	t := time.NewTimer(g.Interval)
	defer t.Stop()
	for i := 1; i < g.Count; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.round(ctx, vips)
		t.Reset(g.Interval)
	}
	if g.Refresh <= 0 {
		return
	}
	tick := time.NewTicker(g.Refresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			m.round(ctx, all)
		}
	}
}

// round announces each of vips once. Failures are logged and counted; the
// first is returned (wrapped) so a synchronous caller can report it.
func (m *Manager) round(ctx context.Context, vips []netip.Prefix) error {
	var errs []error
	for _, p := range vips {
		if ctx.Err() != nil {
			return errors.Join(append(errs, ctx.Err())...)
		}
		if err := m.ann.Announce(p.Addr()); err != nil {
			m.errs.Add(1)
			m.warnAnnounce(p, err)
			errs = append(errs, fmt.Errorf("vip: announce %v on %s: %w", p, m.iface, err))
			continue
		}
		m.failMu.Lock()
		delete(m.annFail, p)
		m.failMu.Unlock()
		if p.Addr().Is4() {
			m.garps.Add(1)
		} else {
			m.nas.Add(1)
		}
	}
	return errors.Join(errs...)
}

// warnAnnounce logs a failed announcement of p: a new failure at once,
// the same one again at most every annFailEvery, with the count of those
// not logged (all are counted in the errors metric).
func (m *Manager) warnAnnounce(p netip.Prefix, err error) {
	now, msg := time.Now(), err.Error()
	m.failMu.Lock()
	last, seen := m.annFail[p]
	if seen && last.msg == msg && now.Sub(last.logged) < annFailEvery {
		last.skipped++
		m.annFail[p] = last
		m.failMu.Unlock()
		return
	}
	if m.annFail == nil {
		m.annFail = make(map[netip.Prefix]annFailure)
	}
	m.annFail[p] = annFailure{msg: msg, logged: now}
	m.failMu.Unlock()
	m.log.Warn("announcing VIP failed", "vip", p, "err", err, "suppressed", last.skipped)
}

// stopAnnouncing ends the background goroutine, if any, and waits for it.
// m.mu must be held.
func (m *Manager) stopAnnouncing() {
	if m.stop != nil {
		m.stop()
		m.stop = nil
	}
	m.wg.Wait()
}
