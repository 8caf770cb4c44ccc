package replicate

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/internal/testutil"
)

// corruptProxy forwards loopback connections to target and flips one byte
// of the client→target stream once flipAt bytes have passed (over all
// connections). Closing it closes everything.
type corruptProxy struct {
	ln      net.Listener
	target  string
	flipAt  int64
	passed  atomic.Int64
	flipped atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
}

func newCorruptProxy(t *testing.T, target string, flipAt int64) *corruptProxy {
	p := &corruptProxy{ln: listen(t), target: target, flipAt: flipAt}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *corruptProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Go(func() { io.Copy(c, u); c.Close() })
		p.wg.Go(func() { p.forward(u, c); u.Close() })
	}
}

func (p *corruptProxy) forward(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			total := p.passed.Add(int64(n))
			if total >= p.flipAt && !p.flipped.Load() && p.flipped.CompareAndSwap(false, true) {
				buf[n-1] ^= 0x40
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *corruptProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// A byte flipped on the wire fails to open: the receiver drops the
// connection and counts it, the sender reconnects, nothing is lost.
func TestCorruptFrameDropped(t *testing.T) {
	la, lb := listen(t), listen(t)
	proxy := newCorruptProxy(t, lb.Addr().String(), 64<<10)
	a := newNode(t, "lb1", la, proxy.ln.Addr().String(), newStore(false), nil)
	b := newNode(t, "lb2", lb, la.Addr().String(), newStore(true), nil)
	a.start(t)
	b.start(t)
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))
	const n, clients = 40000, 4000
	for i := 0; i < n; i += 500 {
		a.publish(i, i+500, clients)
		time.Sleep(time.Millisecond)
	}
	testutil.WaitWithin(t, 10*time.Second, "tables equal", func() bool { return b.store.diff(a.store) == nil })
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))
	if !proxy.flipped.Load() {
		t.Fatal("the proxy never corrupted a byte")
	}
	if st := b.r.Status(); st.Dropped[dropFrame] != 1 {
		t.Fatalf("receiver did not count the bad frame: %+v", st.Dropped)
	}
	// Resumed, not resynced: exactly the published sequence was applied.
	if got := b.store.appliedCopy(); len(got) != n {
		t.Fatalf("applied %d, want %d", len(got), n)
	}
}

// A connection cut in the middle of a bulk leaves the receiver without a
// complete table; the reconnect sends a full bulk again.
func TestCutMidBulkResends(t *testing.T) {
	sa := newStore(false)
	const n = 150000
	for i := range n {
		sa.put(testEntry(i, n))
	}
	sb := newStore(false)
	a, b := pair(t, sa, sb, nil)
	a.start(t)
	b.start(t)
	testutil.WaitWithin(t, 10*time.Second, "bulk under way", func() bool { return b.r.Status().Received > 0 })
	if st := b.r.Status(); st.BulkDone {
		t.Skip("bulk finished before it could be cut; machine too fast for this test")
	}
	a.r.killConns()
	select {
	case <-b.r.BulkReceived():
	case <-time.After(10 * time.Second):
		t.Fatal("no complete bulk after the cut")
	}
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))
	if err := sb.diff(sa); err != nil {
		t.Fatal(err)
	}
	if st := a.r.Status(); st.Resyncs < 2 || st.Resumes != 0 {
		t.Fatalf("want a second full bulk, no resume: %+v", st)
	}
}
