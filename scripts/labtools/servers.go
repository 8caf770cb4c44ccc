package main

// The lab's servers: respond (TCP and UDP, the lab's stand-in for a
// service), backend (HTTP and UDP, the chaos suite's), echo (lines or
// bytes, for sessions and for the idle connections of bench-proxy.sh).

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// cmdRespond answers every TCP connection (and with -udp every UDP
// datagram) with "NAME\n", until SIGTERM or SIGINT.
func cmdRespond(args []string) error {
	fs := flag.NewFlagSet("respond", flag.ContinueOnError)
	listen := fs.String("listen", "0.0.0.0:8080", "address:port to listen on")
	name := fs.String("name", "", "name to answer with (required)")
	udp := fs.Bool("udp", false, "also answer UDP datagrams on the same address")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if *name == "" || fs.NArg() != 0 {
		return usageError("-name is required; no positional arguments")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	msg := []byte(*name + "\n")
	tcp, udpNet := "tcp", "udp"
	if host, _, err := net.SplitHostPort(*listen); err != nil {
		return usageError("-listen: " + err.Error())
	} else if ip := net.ParseIP(host); ip != nil && ip.To4() != nil {
		tcp, udpNet = "tcp4", "udp4"
	}
	lc := net.ListenConfig{Control: freebind}
	ln, err := lc.Listen(ctx, tcp, *listen)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveTCP(ln, msg)
	}()

	var pc *net.UDPConn
	if *udp {
		c, err := lc.ListenPacket(ctx, udpNet, *listen)
		if err != nil {
			ln.Close()
			return err
		}
		pc = c.(*net.UDPConn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveUDP(pc, msg)
		}()
	}
	fmt.Fprintf(os.Stderr, "labtools respond: %s listening on %s (udp=%v)\n", *name, ln.Addr(), *udp)

	<-ctx.Done()
	ln.Close()
	if pc != nil {
		pc.Close()
	}
	wg.Wait()
	return nil
}

// freebind lets the listener bind an address that is not (yet) local,
// such as a VIP held by the peer.
func freebind(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_FREEBIND, 1)
		if serr == nil && (network == "udp" || network == "udp4") {
			// learn each datagram's destination so replies leave from it
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_PKTINFO, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

func serveTCP(ln net.Listener, msg []byte) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// e.g. EMFILE: back off briefly rather than spin
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			c.Write(msg)
			c.Close()
		}()
	}
}

func serveUDP(pc *net.UDPConn, msg []byte) {
	buf := make([]byte, 2048)
	oob := make([]byte, 256)
	for {
		_, oobn, _, from, err := pc.ReadMsgUDP(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		pc.WriteMsgUDP(msg, replyOOB(oob[:oobn]), from)
	}
}

// replyOOB turns the IP_PKTINFO of a received datagram into the control
// message that makes the reply leave from the address it was sent to
// (a socket bound to 0.0.0.0 would otherwise answer a VIP from the box's
// own address).
func replyOOB(oob []byte) []byte {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	for _, m := range msgs {
		if m.Header.Level != syscall.SOL_IP || m.Header.Type != syscall.IP_PKTINFO {
			continue
		}
		if len(m.Data) < syscall.SizeofInet4Pktinfo {
			return nil
		}
		// struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
		var dst [4]byte
		copy(dst[:], m.Data[8:12]) // addr: the header destination
		out := make([]byte, syscall.CmsgSpace(syscall.SizeofInet4Pktinfo))
		h := (*syscall.Cmsghdr)(unsafePointer(&out[0]))
		h.Level = syscall.SOL_IP
		h.Type = syscall.IP_PKTINFO
		h.SetLen(syscall.CmsgLen(syscall.SizeofInet4Pktinfo))
		data := out[syscall.CmsgLen(0):]
		// ifindex 0: let routing choose; spec_dst: our source address
		copy(data[4:8], dst[:])
		return out
	}
	return nil
}

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
