package main

import (
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
