package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/tandem-lb/tandem/pkg/config"
	"github.com/tandem-lb/tandem/pkg/vip"
)

// vipGroup is the node's VIPs on every interface they live on (the front
// interface and, for nat clusters, an inside one with the servers'
// gateway): one vip.Manager per interface, claimed and released together.
type vipGroup struct {
	ifaces []string // failover.interface first
	ms     []*vip.Manager
}

// newVIPGroup builds a manager for each interface a VIP of f lives on.
func newVIPGroup(f config.Failover, log *slog.Logger) (*vipGroup, error) {
	g := &vipGroup{}
	garp := vip.GARP{Count: f.GARP.Count, Interval: f.GARP.Interval, Refresh: f.GARP.Refresh}
	for _, iface := range f.VIPInterfaces() {
		m, err := vip.New(iface, f.PrefixesOn(iface), garp, log)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("VIPs on %s: %w", iface, err)
		}
		g.ifaces = append(g.ifaces, iface)
		g.ms = append(g.ms, m)
	}
	return g, nil
}

// SetStateFiles gives each interface's manager its state file beside the
// control socket (tandem release reads them all).
func (g *vipGroup) SetStateFiles(apiSocket string) {
	for i, m := range g.ms {
		m.SetStateFile(vip.StateFile(apiSocket, g.ifaces[i]))
	}
}

// each runs fn on every manager, all of them even after a failure, and
// joins the errors.
func (g *vipGroup) each(fn func(*vip.Manager) error) error {
	var errs []error
	for _, m := range g.ms {
		if err := fn(m); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (g *vipGroup) Cleanup() error { return g.each((*vip.Manager).Cleanup) }
func (g *vipGroup) Release() error { return g.each((*vip.Manager).Release) }
func (g *vipGroup) Close() error   { return g.each((*vip.Manager).Close) }

func (g *vipGroup) Claim(ctx context.Context) error {
	return g.each(func(m *vip.Manager) error { return m.Claim(ctx) })
}

func (g *vipGroup) Announce(ctx context.Context) error {
	return g.each(func(m *vip.Manager) error { return m.Announce(ctx) })
}

func (g *vipGroup) AnnounceOnce(ctx context.Context) error {
	return g.each(func(m *vip.Manager) error { return m.AnnounceOnce(ctx) })
}

// Reconcile re-adds missing VIPs on every interface.
func (g *vipGroup) Reconcile(ctx context.Context) ([]netip.Prefix, error) {
	var out []netip.Prefix
	err := g.each(func(m *vip.Manager) error {
		p, err := m.Reconcile(ctx)
		out = append(out, p...)
		return err
	})
	return out, err
}

// SetVIPs gives each interface its VIPs of f (a reload). The interfaces
// themselves cannot change without a restart.
func (g *vipGroup) SetVIPs(ctx context.Context, f config.Failover) error {
	want := f.VIPInterfaces()
	if len(want) != len(g.ifaces) {
		return fmt.Errorf("the VIPs' interfaces changed (%v -> %v): that needs a restart", g.ifaces, want)
	}
	for i, iface := range want {
		if iface != g.ifaces[i] {
			return fmt.Errorf("the VIPs' interfaces changed (%v -> %v): that needs a restart", g.ifaces, want)
		}
	}
	garp := vip.GARP{Count: f.GARP.Count, Interval: f.GARP.Interval, Refresh: f.GARP.Refresh}
	var errs []error
	for i, m := range g.ms {
		if err := m.SetVIPs(ctx, f.PrefixesOn(g.ifaces[i]), garp); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Held lists the VIPs of every interface.
func (g *vipGroup) Held() []vip.Held {
	var out []vip.Held
	for _, m := range g.ms {
		out = append(out, m.Held()...)
	}
	return out
}

// Stats adds up the managers' counters.
func (g *vipGroup) Stats() vip.Stats {
	var s vip.Stats
	for _, m := range g.ms {
		x := m.Stats()
		s.Claims += x.Claims
		s.Releases += x.Releases
		s.GARPsSent += x.GARPsSent
		s.NAsSent += x.NAsSent
		s.Readded += x.Readded
		s.Errors += x.Errors
	}
	return s
}
