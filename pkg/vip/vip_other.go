//go:build !linux

package vip

import (
	"context"
	"log/slog"
)

func newPlatform(string) (addrOps, announcer, error) {
	return nil, nil, unsupportedError{}
}

// WatchCarrier reports interface carrier changes; it needs Linux netlink
// and returns an error wrapping ErrUnsupported here.
func WatchCarrier(ctx context.Context, ifaces []string, out chan<- LinkEvent, log *slog.Logger) error {
	return unsupportedError{}
}
