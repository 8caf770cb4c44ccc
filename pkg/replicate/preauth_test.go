package replicate

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/internal/testutil"
)

func tcpAddr(s string) net.Addr {
	a, _ := net.ResolveTCPAddr("tcp", s)
	return a
}

// TestPreauthAdmit: the peer's address has slots strangers cannot take,
// one stranger address gets one slot, all strangers together a few, each
// with a short deadline; slots come back on release, once.
func TestPreauthAdmit(t *testing.T) {
	p := newPreauth("198.18.0.12:7947")
	var releases []func()
	admit := func(addr string) (time.Duration, bool) {
		rel, to, ok := p.admit(tcpAddr(addr), 5*time.Second)
		if ok {
			releases = append(releases, rel)
		}
		return to, ok
	}
	for i := range strangerHandshakes {
		if to, ok := admit(fmt.Sprintf("198.18.0.%d:40000", 100+i)); !ok || to != strangerTimeout {
			t.Fatalf("stranger %d: admitted %v, timeout %v", i, ok, to)
		}
	}
	if _, ok := admit("198.18.0.200:40000"); ok {
		t.Fatal("a stranger beyond the strangers' slots was admitted")
	}
	for i := range peerHandshakes {
		if to, ok := admit("198.18.0.12:50000"); !ok || to != 5*time.Second {
			t.Fatalf("peer handshake %d refused (%v) or short deadline %v while strangers hold their slots", i, ok, to)
		}
	}
	if _, ok := admit("198.18.0.12:50001"); ok {
		t.Fatal("the peer's address got more than its slots")
	}
	for _, r := range releases {
		r()
		r() // twice is harmless
	}
	if p.total != 0 || p.peerN != 0 || len(p.strangers) != 0 {
		t.Fatalf("after release: total %d, peer %d, sources %v", p.total, p.peerN, p.strangers)
	}
	// One source, one slot.
	if _, ok := admit("198.18.0.100:1"); !ok {
		t.Fatal("refused")
	}
	if _, ok := admit("198.18.0.100:2"); ok {
		t.Fatal("a second handshake from one stranger admitted")
	}
}

// flood keeps up to n idle connections open to addr from 127.0.0.2,
// 127.0.0.3, ... (strangers that never send a byte), reopening those the
// server closes, until ctx ends. It returns how many it opened.
func flood(ctx context.Context, t *testing.T, addr string, sources, perSource int) *atomic.Int64 {
	opened := &atomic.Int64{}
	var wg sync.WaitGroup
	for s := range sources {
		for range perSource {
			wg.Go(func() {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+s))}, Timeout: time.Second}
				for i := 0; i < 200 && ctx.Err() == nil; i++ { // bounded
					c, err := d.DialContext(ctx, "tcp", addr)
					if err != nil {
						time.Sleep(10 * time.Millisecond)
						continue
					}
					opened.Add(1)
					stop := context.AfterFunc(ctx, func() { c.Close() })
					// Idle until the server gives up on us.
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					_, _ = c.Read(make([]byte, 1))
					stop()
					c.Close()
				}
			})
		}
	}
	t.Cleanup(wg.Wait)
	return opened
}

// TestStrangersCannotLockThePeerOut: 16 addresses keep idle connections
// open on both nodes' replication ports, more than all the handshake
// slots, before the nodes start and all along; the real pair still
// authenticates and syncs, and the strangers are refused as busy.
func TestStrangersCannotLockThePeerOut(t *testing.T) {
	sa, sb := newStore(false), newStore(false)
	for i := range 100 {
		sa.put(testEntry(i, 100))
	}
	a, b := pair(t, sa, sb, nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	fa := flood(ctx, t, a.ln.Addr().String(), 16, 2)
	fb := flood(ctx, t, b.ln.Addr().String(), 16, 2)
	time.Sleep(200 * time.Millisecond) // the strangers are in first
	a.start(t)
	b.start(t)
	testutil.WaitWithin(t, 10*time.Second, "both in sync despite the flood", inSync(a, b))
	if got := sb.len(); got != 100 {
		t.Fatalf("b has %d entries, want 100", got)
	}
	if fa.Load() == 0 || fb.Load() == 0 || b.r.Status().Dropped[dropBusy] == 0 {
		t.Fatalf("the flood did not bite: opened %d/%d, b busy %d", fa.Load(), fb.Load(), b.r.Status().Dropped[dropBusy])
	}
	cancel()
}
