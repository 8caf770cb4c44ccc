//go:build !linux

package dataplane

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"
)

// EpollEngine is the epoll event-loop Engine; it exists only on Linux.
type EpollEngine struct{}

// NewEpollEngine reports that epoll is not available on this system.
func NewEpollEngine(loops int, log *slog.Logger) (*EpollEngine, error) {
	return nil, errors.New("dataplane: the epoll engine needs Linux")
}

// Proxy closes both connections and calls done: there is no event loop.
func (e *EpollEngine) Proxy(client, server *net.TCPConn, idle time.Duration, done func(Traffic)) {
	client.Close()
	server.Close()
	done(Traffic{})
}

// Run waits for ctx to end.
func (e *EpollEngine) Run(ctx context.Context) { <-ctx.Done() }

// Stats returns zero counters.
func (e *EpollEngine) Stats() EpollStats { return EpollStats{} }
