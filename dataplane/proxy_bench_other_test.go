//go:build !linux

package dataplane

import "testing"

// benchEngineList is the engines the proxy benchmarks compare.
func benchEngineList() []benchEngine {
	return []benchEngine{{"goengine", func(*testing.B) Engine { return NewGoEngine(nil) }}}
}
