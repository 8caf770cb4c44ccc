package console

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
	"golang.org/x/sync/errgroup"
)

// Limits of the console's HTTP server. There is no overall write timeout
// (the live feed is a long response); each of its writes has one.
const (
	maxConns          = 128
	maxHeaderBytes    = 16 << 10
	maxBodyBytes      = 16 << 10
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	idleTimeout       = time.Minute
)

// ServeOptions says where the console listens.
type ServeOptions struct {
	Listen string // host:port
	// CertFile and KeyFile serve HTTPS when set (both).
	CertFile, KeyFile string
}

// Serve runs the console until ctx ends: the HTTP server on o.Listen,
// the history sampler and the live feed, under one errgroup. Open pages
// lose their feed when ctx ends (and show it).
func (c *Console) Serve(ctx context.Context, o ServeOptions) error {
	l, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("console listen %s: %w", o.Listen, err)
	}
	return c.ServeListener(ctx, l, o)
}

// ServeListener is Serve on an open listener (which it closes).
func (c *Console) ServeListener(ctx context.Context, l net.Listener, o ServeOptions) error {
	g, gctx := errgroup.WithContext(ctx)
	srv := &http.Server{
		Handler:           http.MaxBytesHandler(c.Handler(), maxBodyBytes),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
		// Handlers (the live feeds) end with the console.
		BaseContext: func(net.Listener) context.Context { return gctx },
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			l.Close()
			return fmt.Errorf("console TLS: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	l = netutil.LimitListener(l, maxConns)
	scheme := "http"
	if o.CertFile != "" {
		scheme = "https"
	}
	c.log.Info("console listening", "url", scheme+"://"+l.Addr().String()+"/")
	g.Go(func() error { c.hist.Run(gctx, c.src, c.now); return nil })
	g.Go(func() error { c.live.run(gctx); return nil })
	g.Go(func() error {
		var err error
		if o.CertFile != "" {
			err = srv.ServeTLS(l, "", "")
		} else {
			err = srv.Serve(l)
		}
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("console: %w", err)
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
		return nil
	})
	return g.Wait()
}
