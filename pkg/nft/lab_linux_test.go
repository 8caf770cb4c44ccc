package nft

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// The lab: five namespaces of the test's own, nothing in the caller's.
//
//	client (198.18.50.10, 2001:2:0:50::10)
//	   |  bridge bf in sw
//	lb  eth0 198.18.50.1 + VIP .100 (v6 ::1, VIP ::100)
//	    eth1 198.19.50.1 + SNAT .2  (v6 2001:2:0:51::1)
//	   |  bridge bi in sw
//	s1 198.19.50.21, s2 .22 (v6 ::21, ::22), default route via lb
//	   unless the lab is built without routes (snat mode).
var (
	vip4    = netip.MustParseAddr("198.18.50.100")
	vip6    = netip.MustParseAddr("2001:2:0:50::100")
	client4 = netip.MustParseAddr("198.18.50.10")
	client6 = netip.MustParseAddr("2001:2:0:50::10")
	snat4   = netip.MustParseAddr("198.19.50.2")
	srv4    = []netip.Addr{netip.MustParseAddr("198.19.50.21"), netip.MustParseAddr("198.19.50.22")}
	srv6    = []netip.Addr{netip.MustParseAddr("2001:2:0:51::21"), netip.MustParseAddr("2001:2:0:51::22")}
)

var labSeq atomic.Int32

type lab struct {
	t                      *testing.T
	client, lb, s1, s2, sw string
	m                      *Manager
}

func needRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping a network namespace test")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces with nftables rules")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newLab builds the namespaces (torn down in t.Cleanup) and opens a
// Manager in the lb namespace.
func newLab(t *testing.T, routes bool) *lab {
	t.Helper()
	needRoot(t)
	p := fmt.Sprintf("nfth-%d-%d", os.Getpid(), labSeq.Add(1))
	l := &lab{t: t, client: p + "-client", lb: p + "-lb", s1: p + "-s1", s2: p + "-s2", sw: p + "-sw"}
	for _, ns := range []string{l.client, l.lb, l.s1, l.s2, l.sw} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		// No duplicate address detection, link-local addresses
		// included: IPv6 works the moment the links are up.
		run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	ipn := func(ns string, args ...string) { run(t, "ip", append([]string{"-n", ns}, args...)...) }
	for _, br := range []string{"bf", "bi"} {
		// No multicast snooping: IPv6 neighbour discovery must not
		// depend on MLD reports racing the ports coming up.
		ipn(l.sw, "link", "add", br, "type", "bridge", "mcast_snooping", "0")
		ipn(l.sw, "link", "set", br, "up")
	}
	plug := func(port, br, ns, dev string) {
		ipn(l.sw, "link", "add", port, "type", "veth", "peer", "name", dev, "netns", ns)
		ipn(l.sw, "link", "set", port, "master", br, "up")
		ipn(ns, "link", "set", dev, "up")
	}
	plug("pc", "bf", l.client, "eth0")
	plug("plf", "bf", l.lb, "eth0")
	plug("pli", "bi", l.lb, "eth1")
	plug("ps1", "bi", l.s1, "eth0")
	plug("ps2", "bi", l.s2, "eth0")
	addr := func(ns, dev string, cidrs ...string) {
		for _, c := range cidrs {
			args := []string{"addr", "add", c, "dev", dev}
			if strings.Contains(c, ":") {
				args = append(args, "nodad")
			}
			ipn(ns, args...)
		}
	}
	addr(l.client, "eth0", "198.18.50.10/24", "2001:2:0:50::10/64")
	addr(l.lb, "eth0", "198.18.50.1/24", "198.18.50.100/24", "2001:2:0:50::1/64", "2001:2:0:50::100/64")
	addr(l.lb, "eth1", "198.19.50.1/24", "198.19.50.2/24", "2001:2:0:51::1/64")
	addr(l.s1, "eth0", "198.19.50.21/24", "2001:2:0:51::21/64")
	addr(l.s2, "eth0", "198.19.50.22/24", "2001:2:0:51::22/64")
	if routes {
		for _, s := range []string{l.s1, l.s2} {
			ipn(s, "route", "add", "default", "via", "198.19.50.1")
			ipn(s, "-6", "route", "add", "default", "via", "2001:2:0:51::1")
		}
	}
	run(t, "ip", "netns", "exec", l.lb, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	l.m = l.manager()
	return l
}

// manager opens a Manager in the lb namespace.
func (l *lab) manager() *Manager {
	h, err := netns.GetFromName(l.lb)
	if err != nil {
		l.t.Fatal(err)
	}
	defer h.Close()
	m, err := NewInNetns(int(h), "", slog.New(slog.DiscardHandler))
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { m.Close() })
	return m
}

func (l *lab) apply(spec Spec) {
	l.t.Helper()
	if err := l.m.Apply(spec); err != nil {
		l.t.Fatalf("Apply: %v", err)
	}
}

// nft runs the nft CLI in the lb namespace.
func (l *lab) nft(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", l.lb, "nft"}, args...)...).CombinedOutput()
	return string(out), err
}

// nftScript loads a ruleset with nft -f in the lb namespace.
func (l *lab) nftScript(script string) (string, error) {
	cmd := exec.Command("ip", "netns", "exec", l.lb, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// inNS runs fn on a thread switched into the named namespace. Sockets
// made by fn stay in that namespace afterwards.
func inNS(t *testing.T, name string, fn func() error) {
	t.Helper()
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// The thread stays locked and dies with the goroutine.
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// serveTCP listens in ns on addr; each connection gets a line
// "<name> <remote addr:port>" and then its lines echoed; oneshot closes
// right after the first line (the server closes first: no TIME_WAIT on
// the client, so a 5-tuple can be reused at once).
func serveTCP(t *testing.T, ns, name string, addr netip.AddrPort, oneshot bool) {
	t.Helper()
	var ln net.Listener
	inNS(t, ns, func() (err error) {
		ln, err = net.Listen("tcp", addr.String())
		return err
	})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	// Cleanup closes the live connections too: their clients' FINs may
	// never arrive (a test that removed the NAT rules).
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
				if oneshot {
					return
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s echo %s\n", name, sc.Text())
				}
			}()
		}
	}()
}

// serveUDP answers each datagram with "<name> <remote addr:port>".
func serveUDP(t *testing.T, ns, name string, addr netip.AddrPort) {
	t.Helper()
	var pc net.PacketConn
	inNS(t, ns, func() (err error) {
		pc, err = net.ListenPacket("udp", addr.String())
		return err
	})
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(name+" "+from.String()), from)
		}
	}()
}

// conn is a client connection and the greeting line of its server.
type conn struct {
	net.Conn
	rd     *bufio.Reader
	server string // the name the server gave
	seen   string // the client address the server saw
}

// dialTCP connects from ns; from may be a zero AddrPort. It returns nil
// if no answer came within timeout (the rules dropped the connection).
func dialTCP(t *testing.T, ns string, from, to netip.AddrPort, timeout time.Duration) *conn {
	t.Helper()
	var c net.Conn
	var derr error
	inNS(t, ns, func() error {
		d := net.Dialer{Timeout: timeout}
		if from.IsValid() {
			d.LocalAddr = net.TCPAddrFromAddrPort(from)
		}
		c, derr = d.Dial("tcp", to.String())
		return nil
	})
	if derr != nil {
		if errors.Is(derr, context.DeadlineExceeded) || isTimeout(derr) {
			return nil
		}
		t.Fatalf("dial %s -> %s: %v", from, to, derr)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(3 * time.Second))
	rd := bufio.NewReader(c)
	line, err := rd.ReadString('\n')
	if err != nil {
		t.Fatalf("read greeting from %s: %v", to, err)
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		t.Fatalf("greeting %q", line)
	}
	return &conn{Conn: c, rd: rd, server: f[0], seen: f[1]}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// echo sends a line on an established connection and returns the answer.
func (c *conn) echo(t *testing.T, s string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", s); err != nil {
		t.Fatalf("write: %v", err)
	}
	line, err := c.rd.ReadString('\n')
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	return strings.TrimSpace(line)
}

// askUDP sends one datagram from ns and returns the answer ("" on
// timeout). The socket is connected, so only an answer from to counts.
func askUDP(t *testing.T, ns string, to netip.AddrPort, timeout time.Duration) string {
	t.Helper()
	var c net.Conn
	inNS(t, ns, func() (err error) {
		c, err = net.Dial("udp", to.String())
		return err
	})
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }
