//go:build !linux

package vip

import (
	"context"
	"log/slog"
	"net"
)

func newPlatform(string) (addrOps, announcer, error) {
	return nil, nil, unsupportedError{}
}

// WatchCarrier reports interface carrier changes; it needs Linux netlink
// and returns an error wrapping ErrUnsupported here.
func WatchCarrier(ctx context.Context, ifaces []string, out chan<- LinkEvent, log *slog.Logger) error {
	return unsupportedError{}
}

// Run watches ARP traffic; it needs Linux packet sockets and returns an
// error wrapping ErrUnsupported here.
func (w *RivalWatcher) Run(ctx context.Context, out chan<- Sighting, own func(net.HardwareAddr), log *slog.Logger) error {
	return unsupportedError{}
}
