//go:build !linux

package api

import (
	"errors"
	"net"
)

// peerCred is Linux only; elsewhere the socket's mode is the only guard,
// so every connection is refused rather than let in unchecked.
func peerCred(net.Conn) (Cred, func() ([]int, error), error) {
	return Cred{}, nil, errors.New("peer credentials are only supported on Linux")
}
