package ctsync

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// The failover lab: a client, two load-balancer boxes and a server,
// joined by two bridges that live in a namespace of their own.
//
//	cl 198.18.60.10 ── brf ── lb1 .11 / lb2 .12   (VIP 198.18.60.100)
//	srv 198.19.60.20 ── bri ── lb1 .11 / lb2 .12  (floating .1 gateway, .2 snat)
const (
	vip        = "198.18.60.100"
	vipPort    = 7000
	server     = "198.19.60.20"
	serverPort = 7070
	udpPort    = 5300
	udpServer  = 5353
	gwFloat    = "198.19.60.1"
	snatFloat  = "198.19.60.2"
)

type failoverLab struct {
	cl, lb1, lb2, srv, sw string
	snat                  bool
	t1, t2                *Table
}

func lbRuleset(snat bool) string {
	post := ""
	if snat {
		post = "ct mark 0x7a000001 snat to " + snatFloat
	}
	return fmt.Sprintf(`table ip tandemtest {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %[1]s tcp dport %[2]d ct mark set 0x7a000001 dnat to %[3]s:%[4]d
		ip daddr %[1]s udp dport %[5]d ct mark set 0x7a000002 dnat to %[3]s:%[6]d
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		%[7]s
	}
}`, vip, vipPort, server, serverPort, udpPort, udpServer, post)
}

func newFailoverLab(t *testing.T, tag string, snat bool) *failoverLab {
	l := newLab(t, tag)
	fl := &failoverLab{sw: l.ns("sw"), cl: l.ns("cl"), lb1: l.ns("lb1"), lb2: l.ns("lb2"), srv: l.ns("srv"), snat: snat}
	for _, br := range []string{"brf", "bri"} {
		run(t, "ip", "-n", fl.sw, "link", "add", br, "type", "bridge")
		run(t, "ip", "-n", fl.sw, "link", "set", br, "up")
	}
	plug := func(box, ifname, br, cidr string) {
		port := "p-" + box[len(box)-3:] + "-" + ifname
		run(t, "ip", "-n", fl.sw, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", box)
		run(t, "ip", "-n", fl.sw, "link", "set", port, "master", br, "up")
		run(t, "ip", "-n", box, "addr", "add", cidr, "dev", ifname)
		run(t, "ip", "-n", box, "link", "set", ifname, "up")
	}
	plug(fl.cl, "eth0", "brf", "198.18.60.10/24")
	plug(fl.lb1, "f", "brf", "198.18.60.11/24")
	plug(fl.lb1, "i", "bri", "198.19.60.11/24")
	plug(fl.lb2, "f", "brf", "198.18.60.12/24")
	plug(fl.lb2, "i", "bri", "198.19.60.12/24")
	plug(fl.srv, "eth0", "bri", server+"/24")
	if !snat {
		run(t, "ip", "-n", fl.srv, "route", "add", "default", "via", gwFloat)
	}
	for _, lb := range []string{fl.lb1, fl.lb2} {
		sysctl(t, lb, "net/ipv4/ip_forward", "1")
		// conntrack must not pick up mid-stream TCP on its own: only a
		// replicated entry may carry an established flow over.
		sysctl(t, lb, "net/netfilter/nf_conntrack_tcp_loose", "0")
		nft(t, lb, lbRuleset(snat))
	}
	fl.claim(t, fl.lb1)
	fl.t1, fl.t2 = openTable(t, fl.lb1), openTable(t, fl.lb2)
	return fl
}

func (fl *failoverLab) floats() []string {
	if fl.snat {
		return []string{snatFloat}
	}
	return []string{gwFloat}
}

func (fl *failoverLab) claim(t testing.TB, lb string) {
	t.Helper()
	run(t, "ip", "-n", lb, "addr", "add", vip+"/24", "dev", "f")
	for _, a := range fl.floats() {
		run(t, "ip", "-n", lb, "addr", "add", a+"/24", "dev", "i")
	}
}

// failover pulls lb1's cables, moves the VIP and the floating address to
// lb2 and makes the client and the server forget lb1's MAC address.
func (fl *failoverLab) failover(t *testing.T) {
	t.Helper()
	run(t, "ip", "-n", fl.lb1, "addr", "flush", "dev", "f")
	run(t, "ip", "-n", fl.lb1, "addr", "flush", "dev", "i")
	run(t, "ip", "-n", fl.lb1, "link", "set", "f", "down")
	run(t, "ip", "-n", fl.lb1, "link", "set", "i", "down")
	fl.claim(t, fl.lb2)
	run(t, "ip", "-n", fl.cl, "neigh", "flush", "all")
	run(t, "ip", "-n", fl.srv, "neigh", "flush", "all")
}

// echoServer runs a line echo server on the server box until the test
// ends.
func echoServer(t *testing.T, ns string) {
	var ln net.Listener
	inNS(t, ns, func() {
		var err error
		if ln, err = net.Listen("tcp", fmt.Sprintf(":%d", serverPort)); err != nil {
			t.Fatal(err)
		}
	})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close() // a session cut by a failover would otherwise linger
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
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
}

type echoConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialEcho(t *testing.T, ns string) *echoConn {
	var c net.Conn
	inNS(t, ns, func() {
		var err error
		if c, err = net.DialTimeout("tcp", fmt.Sprintf("%s:%d", vip, vipPort), 3*time.Second); err != nil {
			t.Fatalf("dial the VIP: %v", err)
		}
	})
	t.Cleanup(func() { c.Close() })
	return &echoConn{c: c, r: bufio.NewReader(c)}
}

// roundTrip sends a line and waits for its echo.
func (e *echoConn) roundTrip(line string, within time.Duration) error {
	e.c.SetDeadline(time.Now().Add(within))
	if _, err := e.c.Write([]byte(line + "\n")); err != nil {
		return err
	}
	got, err := e.r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(got) != line {
		return fmt.Errorf("echo %q, want %q", got, line)
	}
	return nil
}

// startEvents runs lb's Events into a buffered channel and returns once
// the listener is subscribed: a flow written on purpose comes back as an
// event. The listener must exist before flows are created, since with
// nf_conntrack_events=2 entries born without one never report.
func startEvents(t testing.TB, tb *Table, mark, mask uint32, size int) (<-chan Event, func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan Event, size)
	errc := make(chan error, 1)
	go func() { errc <- tb.Events(ctx, mark, mask, ch) }()
	stop := sync.OnceValue(func() error { cancel(); return <-errc })
	t.Cleanup(func() { stop() })

	probe := dnatFlow()
	probe.Orig.Src = ap("198.18.61.99:1")
	probe.Reply.Dst = probe.Orig.Src
	probe.Mark = mark
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := tb.Write(probe); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-ch:
			if ev.Flow.Key() == probe.Key() {
				if err := tb.Delete(probe); err != nil {
					t.Fatal(err)
				}
				drainUntil(t, ch, func(ev Event) bool { return ev.Type == Destroy && ev.Flow.Key() == probe.Key() })
				return ch, stop
			}
		case err := <-errc:
			t.Fatalf("Events ended: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("Events never delivered the probe flow")
		}
		tb.Delete(probe)
	}
}

func drainUntil(t testing.TB, ch <-chan Event, done func(Event) bool) []Event {
	t.Helper()
	var evs []Event
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-ch:
			evs = append(evs, ev)
			if done(ev) {
				return evs
			}
		case <-timeout:
			t.Fatalf("within 5s: wanted event not seen; got %v", evs)
		}
	}
}

// overTheWire passes f through the replication codec.
func overTheWire(t *testing.T, f Flow) Flow {
	t.Helper()
	got, err := DecodeFlow(AppendFlow(nil, f))
	if err != nil {
		t.Fatalf("codec: %v", err)
	}
	return got
}

// replicate applies events to the backup's table as the node will, each
// flow through the codec.
func replicate(t *testing.T, to *Table, evs []Event) {
	t.Helper()
	for _, ev := range evs {
		if err := to.Apply(Event{Type: ev.Type, Flow: overTheWire(t, ev.Flow)}); err != nil {
			t.Fatalf("replicate %v: %v", ev.Type, err)
		}
	}
}

func TestNetnsFailoverKeepsTCPSession(t *testing.T) {
	for _, snat := range []bool{false, true} {
		name := "gateway"
		if snat {
			name = "snat"
		}
		t.Run(name, func(t *testing.T) { testFailover(t, snat, true) })
	}
}

// TestNetnsFailoverWithoutSyncResets shows the failover test can fail:
// without the entries on lb2 the same session is reset.
func TestNetnsFailoverWithoutSyncResets(t *testing.T) {
	testFailover(t, false, false)
}

func testFailover(t *testing.T, snat, sync bool) {
	tag := "fo"
	if snat {
		tag = "fs"
	}
	if !sync {
		tag = "fn"
	}
	fl := newFailoverLab(t, tag, snat)
	echoServer(t, fl.srv)
	events, _ := startEvents(t, fl.t1, 0x7a000000, tandem, 1024)

	conn := dialEcho(t, fl.cl)
	if err := conn.roundTrip("before", 2*time.Second); err != nil {
		t.Fatalf("echo through lb1: %v", err)
	}
	local := conn.c.LocalAddr().String()
	isOurs := func(ev Event) bool { return ev.Flow.Orig.Src.String() == local }
	evs := drainUntil(t, events, func(ev Event) bool {
		return isOurs(ev) && ev.Flow.TCPState == TCPEstablished && ev.Flow.Status&StatusAssured != 0
	})
	var master Flow
	for _, ev := range evs {
		if isOurs(ev) && ev.Type != Destroy {
			master = ev.Flow
		}
	}
	if to, ok := master.DNAT(); !ok || to.String() != fmt.Sprintf("%s:%d", server, serverPort) {
		t.Fatalf("lb1's event flow %v is not DNATed to the server", master)
	}
	if _, ok := master.SNAT(); ok != snat {
		t.Fatalf("lb1's event flow %v: SNAT %v, want %v", master, ok, snat)
	}

	if sync {
		// The stream the node replicates: every event, then a bulk.
		replicate(t, fl.t2, evs)
		var bulk []Flow
		if err := fl.t1.Dump(0x7a000000, tandem, func(f Flow) bool {
			bulk = append(bulk, overTheWire(t, f))
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if err := fl.t2.WriteBatch(bulk); err != nil {
			t.Fatal(err)
		}
		got := dumpAll(t, fl.t2, 0x7a000001, 0xffffffff)[master.Key()]
		if got.Reply != master.Reply || got.Status&(StatusDstNAT|StatusAssured) != StatusDstNAT|StatusAssured {
			t.Fatalf("lb2's entry %+v (status %#x), want lb1's binding %v", got, got.Status, master.Reply)
		}
	}

	fl.failover(t)
	err := conn.roundTrip("after", 3*time.Second)
	if !sync {
		if err == nil {
			t.Fatal("the session survived on lb2 without a replicated entry: the test cannot tell")
		}
		t.Logf("without replicated entries the session failed as expected: %v", err)
		return
	}
	if err != nil {
		t.Fatalf("the same TCP session through lb2: %v", err)
	}
	for i := range 5 {
		if err := conn.roundTrip(fmt.Sprintf("after-%d", i), 2*time.Second); err != nil {
			t.Fatalf("round trip %d through lb2: %v", i, err)
		}
	}
	// lb2 carried it on the replicated entry, not on one of its own.
	flows := dumpAll(t, fl.t2, 0x7a000001, 0xffffffff)
	if len(flows) != 1 || flows[master.Key()].Reply != master.Reply {
		t.Errorf("lb2's flows after the failover: %v", flows)
	}
	t.Logf("session %s survived the failover (snat=%v)", local, snat)
}
