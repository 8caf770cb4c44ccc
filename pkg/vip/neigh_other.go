//go:build !linux

package vip

import (
	"fmt"
	"runtime"
)

// FlushUnresolved is Linux-only.
func FlushUnresolved(iface string) (int, error) {
	return 0, fmt.Errorf("%w on %s", ErrUnsupported, runtime.GOOS)
}
