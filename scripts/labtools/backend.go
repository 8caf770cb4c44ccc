package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// cmdBackend is a backend server for the chaos suite: HTTP on -http
// answering every request with 200 "NAME\n", and with -udp every datagram
// with "NAME\n", so a client sees which server it reached. One process,
// so a kill -9 takes the whole server down at once.
func cmdBackend(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	name := fs.String("name", "", "name to answer with (required)")
	httpAddr := fs.String("http", "0.0.0.0:80", "HTTP listen address")
	udpAddr := fs.String("udp", "", "UDP listen address (empty: none)")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if *name == "" || fs.NArg() != 0 {
		return usageError("-name is required; no positional arguments")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	msg := []byte(*name + "\n")
	lc := net.ListenConfig{Control: freebind}
	ln, err := lc.Listen(ctx, "tcp4", *httpAddr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(msg)
		}),
		ReadHeaderTimeout: 2 * time.Second,
		IdleTimeout:       5 * time.Second,
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if *udpAddr != "" {
		c, err := lc.ListenPacket(ctx, "udp4", *udpAddr)
		if err != nil {
			return err
		}
		pc := c.(*net.UDPConn)
		defer pc.Close()
		go serveUDP(pc, msg)
	}
	fmt.Fprintf(os.Stderr, "labtools backend: %s on http %s udp %q\n", *name, ln.Addr(), *udpAddr)
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
