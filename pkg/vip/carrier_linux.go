package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tandem-lb/tandem/internal/backoff"
)

// Backoff between link subscriptions (or ARP sockets) after one breaks.
const (
	resubscribeMin = 100 * time.Millisecond
	resubscribeMax = 5 * time.Second
)

// resubscribe paces the reopening of a watch that broke: resubscribeMin,
// doubling to resubscribeMax. A watch that ran longer than
// resubscribeMax before it broke worked, so its owner resets it.
func resubscribe() backoff.Backoff {
	return backoff.Backoff{Min: resubscribeMin, Max: resubscribeMax}
}

// carrierPoll is how often the state is also read directly. The kernel
// (linkwatch) holds back carrier-loss notifications of most devices for up
// to a second and folds a short flap into one message showing the final
// state, while IFF_LOWER_UP changes at once; polling bounds detection by
// this period instead.
const carrierPoll = 200 * time.Millisecond

var errSubscriptionClosed = errors.New("link update channel closed")

// WatchCarrier sends the current carrier state of each of ifaces to out at
// once, then every change, until ctx ends; it then returns nil. It watches
// the network namespace of the calling thread. The netlink subscription
// closes its channel on errors; WatchCarrier then resubscribes after a
// short backoff and re-sends every current state, so a consumer may see a
// repeated state but never misses a change. An interface that does not
// exist is reported down and picked up when it appears. Besides the
// notifications it reads every state each 200ms (see carrierPoll). Only a
// failure to subscribe the first time is returned as an error.
func WatchCarrier(ctx context.Context, ifaces []string, out chan<- LinkEvent, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ns, err := netns.Get()
	if err != nil {
		return fmt.Errorf("vip: watch carrier: get netns: %w", err)
	}
	defer ns.Close()
	h, err := newHandleIn(ns)
	if err != nil {
		return fmt.Errorf("vip: watch carrier: netlink handle: %w", err)
	}
	defer h.Close()

	w := &carrierWatch{h: h, ifaces: ifaces, out: out, log: log,
		last: make(map[string]bool), byIndex: make(map[int]string)}
	retry := resubscribe()
	for first := true; ; first = false {
		updates := make(chan netlink.LinkUpdate, 64)
		done := make(chan struct{})
		err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
			Namespace: otherNetns(ns),
			ErrorCallback: func(err error) {
				log.Warn("link subscription error", "err", err)
			},
		})
		if err != nil {
			close(done)
			if first {
				return fmt.Errorf("vip: watch carrier: subscribe to link updates: %w", err)
			}
			log.Warn("link resubscription failed", "err", err)
		} else {
			start := time.Now()
			err = w.run(ctx, updates)
			close(done)
			for range updates { // let the subscription goroutine exit
			}
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("link subscription ended, resubscribing", "err", err)
			if time.Since(start) > resubscribeMax {
				retry.Reset()
			}
		}
		if !retry.Wait(ctx) {
			return nil
		}
	}
}

// carrierWatch keeps what was last sent per interface, so only changes
// are sent after the initial report.
type carrierWatch struct {
	h       *netlink.Handle
	ifaces  []string
	out     chan<- LinkEvent
	log     *slog.Logger
	last    map[string]bool
	byIndex map[int]string // ifindex → watched name, to notice renames
}

// run reports every interface, then follows updates until ctx ends or the
// channel closes.
func (w *carrierWatch) run(ctx context.Context, updates <-chan netlink.LinkUpdate) error {
	for _, name := range w.ifaces {
		if !w.check(ctx, name, true) {
			return ctx.Err()
		}
	}
	poll := time.NewTicker(carrierPoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-poll.C:
			for _, name := range w.ifaces {
				if !w.check(ctx, name, false) {
					return ctx.Err()
				}
			}
		case u, ok := <-updates:
			if !ok {
				return errSubscriptionClosed
			}
			a := u.Attrs()
			if a == nil {
				continue
			}
			// The update only says "something changed": read the current
			// state, so updates queued before the listing cannot win.
			if old, ok := w.byIndex[a.Index]; ok && old != a.Name {
				delete(w.byIndex, a.Index)
				if !w.check(ctx, old, false) {
					return ctx.Err()
				}
			}
			if w.watched(a.Name) && !w.check(ctx, a.Name, false) {
				return ctx.Err()
			}
		}
	}
}

func (w *carrierWatch) watched(name string) bool {
	for _, n := range w.ifaces {
		if n == name {
			return true
		}
	}
	return false
}

// check reads name's state and sends it if it changed or force is set. It
// returns false if ctx ended first.
func (w *carrierWatch) check(ctx context.Context, name string, force bool) bool {
	up := false
	l, err := w.h.LinkByName(name)
	if err == nil {
		a := l.Attrs()
		w.byIndex[a.Index] = name
		up = linkUp(a)
	} else {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			w.log.Warn("reading link state failed", "iface", name, "err", err)
		}
	}
	prev, seen := w.last[name]
	if seen && prev == up && !force {
		return true
	}
	if seen && prev != up {
		w.log.Info("carrier changed", "iface", name, "up", up)
	}
	w.last[name] = up
	select {
	case w.out <- LinkEvent{Iface: name, Up: up, At: time.Now()}:
		return true
	case <-ctx.Done():
		return false
	}
}

// linkUp is true when the link is administratively up and has carrier.
// IFF_LOWER_UP is the carrier bit and changes at once; the operational
// state follows it only when linkwatch runs, so it can only veto.
func linkUp(a *netlink.LinkAttrs) bool {
	switch a.OperState {
	case netlink.OperDown, netlink.OperLowerLayerDown, netlink.OperNotPresent:
		return false
	}
	return a.Flags&net.FlagUp != 0 && a.RawFlags&unix.IFF_LOWER_UP != 0
}
