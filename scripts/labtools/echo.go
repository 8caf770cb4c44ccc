package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// cmdEcho is the server of `labtools sessions`: it echoes every line of
// every TCP connection back, until SIGTERM or SIGINT. A connection idle
// for -idle is closed; at most -max-conns are open at once (more are
// closed at accept), so a run stays bounded. With -raw it echoes bytes as
// they come, lines or not: the idle sink behind the proxies of
// scripts/bench-proxy.sh, for `labtools hold`.
func cmdEcho(args []string) error {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	listen := fs.String("listen", "0.0.0.0:5222", "address:port to listen on")
	idle := fs.Duration("idle", time.Minute, "close a connection that sends nothing for this long")
	maxConns := fs.Int("max-conns", 10000, "connections open at once at most")
	raw := fs.Bool("raw", false, "echo bytes as they come, not lines")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if fs.NArg() != 0 || *idle <= 0 || *maxConns < 1 {
		return usageError("no positional arguments; -idle > 0; -max-conns >= 1")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	lc := net.ListenConfig{Control: freebind}
	ln, err := lc.Listen(ctx, "tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "labtools echo: listening on %s\n", ln.Addr())
	serveEcho(ctx, ln, *idle, *maxConns, *raw)
	return nil
}

// serveEcho serves ln until ctx ends, then closes every connection and
// returns once their goroutines have.
func serveEcho(ctx context.Context, ln net.Listener, idle time.Duration, maxConns int, raw bool) {
	e := &echoServer{idle: idle, max: maxConns, raw: raw, conns: map[net.Conn]struct{}{}}
	stop := context.AfterFunc(ctx, func() { ln.Close(); e.closeAll() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: back off
			continue
		}
		if !e.add(c) {
			c.Close()
			continue
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			defer e.remove(c)
			e.serve(c)
		}()
	}
	e.closeAll()
	e.wg.Wait()
}

type echoServer struct {
	idle  time.Duration
	max   int
	raw   bool // bytes, not lines
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	shut  bool
}

func (e *echoServer) add(c net.Conn) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.shut || len(e.conns) >= e.max {
		return false
	}
	e.conns[c] = struct{}{}
	return true
}

func (e *echoServer) remove(c net.Conn) {
	e.mu.Lock()
	delete(e.conns, c)
	e.mu.Unlock()
	c.Close()
}

func (e *echoServer) closeAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.shut = true
	for c := range e.conns {
		c.Close()
	}
}

// serve echoes lines (up to 4 KiB each), or bytes when raw, until EOF,
// an error or idleness.
func (e *echoServer) serve(c net.Conn) {
	br := bufio.NewReaderSize(c, 4096)
	buf := make([]byte, 64)
	for {
		c.SetDeadline(time.Now().Add(e.idle))
		var b []byte
		var err error
		if e.raw {
			var n int
			n, err = br.Read(buf)
			b = buf[:n]
		} else {
			b, err = br.ReadSlice('\n')
		}
		if len(b) > 0 {
			if _, werr := c.Write(b); werr != nil {
				return
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}
