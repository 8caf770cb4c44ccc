//go:build !linux

package dataplane

import "testing"

// stickyCPU reports no CPU time where the thread's own is not available.
type stickyCPU struct{}

func (c *stickyCPU) start()            {}
func (c *stickyCPU) stop(b *testing.B) {}
