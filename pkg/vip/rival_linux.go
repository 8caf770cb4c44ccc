package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"github.com/tandem-lb/tandem/internal/backoff"
)

// rivalPoll bounds how long a read blocks, so Run notices ctx ending.
const rivalPoll = 250 * time.Millisecond

// Run reads ARP frames on the interface and sends each sighting to out
// (dropping, and counting, what out cannot take at once) until ctx ends,
// reopening the socket after errors. It returns nil when ctx ends; own,
// called with our hardware address once the socket is open, lets the
// caller learn it.
func (w *RivalWatcher) Run(ctx context.Context, out chan<- Sighting, own func(net.HardwareAddr), log *slog.Logger) error {
	retry := resubscribe()
	for ctx.Err() == nil {
		start := time.Now()
		err := w.runOnce(ctx, out, own)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > resubscribeMax {
			retry.Reset()
		}
		pause := retry.Next()
		log.Warn("ARP watch failed, retrying", "iface", w.iface, "err", err, "retry_in", pause)
		if !backoff.Sleep(ctx, pause) {
			return nil
		}
	}
	return nil
}

func (w *RivalWatcher) runOnce(ctx context.Context, out chan<- Sighting, own func(net.HardwareAddr)) error {
	ifi, err := net.InterfaceByName(w.iface)
	if err != nil {
		return fmt.Errorf("look up %s: %w", w.iface, err)
	}
	c, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, nil)
	if err != nil {
		return fmt.Errorf("open ARP socket on %s: %w", w.iface, err)
	}
	defer c.Close()
	if own != nil {
		own(ifi.HardwareAddr)
	}
	buf := make([]byte, 1600) // an Ethernet frame; ARP needs 42 bytes
	for ctx.Err() == nil {
		if err := c.SetReadDeadline(time.Now().Add(rivalPoll)); err != nil {
			return fmt.Errorf("set deadline: %w", err)
		}
		n, _, err := c.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read ARP on %s: %w", w.iface, err)
		}
		s, ok := w.inspect(buf[:n], ifi.HardwareAddr, time.Now())
		if !ok {
			continue
		}
		select {
		case out <- s:
		default:
			w.dropped.Add(1)
		}
	}
	return nil
}
