package dataplane

import (
	"context"
	"testing"
)

// benchEngineList is the engines the proxy benchmarks compare.
func benchEngineList() []benchEngine {
	return []benchEngine{
		{"goengine", func(*testing.B) Engine { return NewGoEngine(nil) }},
		{"epoll", func(b *testing.B) Engine {
			e, err := NewEpollEngine(1, nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan struct{})
			go func() { e.Run(ctx); close(ran) }()
			b.Cleanup(func() { cancel(); <-ran })
			return e
		}},
	}
}
