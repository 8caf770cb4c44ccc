//go:build !linux

package dataplane

import (
	"context"
	"net"
)

// fastCapable: the fast accept path needs Linux.
func fastCapable(Engine) bool { return false }

func (c *TCPCluster) serveFast(context.Context, *net.TCPListener) (bool, error) { return false, nil }
