package replicate

import (
	"bytes"
	"crypto/rand"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/internal/testutil"
)

// publish puts entries [from, to) into n's store and publishes them.
func (n *node) publish(from, to, clients int) { n.publishOwn(from, to, clients, 0) }

// publishOwn is publish with the cluster shifted by off, so two nodes can
// publish disjoint keys.
func (n *node) publishOwn(from, to, clients int, off uint16) {
	for i := from; i < to; i++ {
		e := testEntry(i, clients)
		e.Cluster += off
		n.store.put(e)
		n.r.Publish(e)
	}
}

func TestNewValidates(t *testing.T) {
	good := Config{Node: "lb1", Listen: "127.0.0.1:7947", Peer: "127.0.0.1:7948", Key: testKey}
	if _, err := New(good, newStore(false)); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	bad := Config{Listen: "nowhere", Peer: "x", Key: []byte("short")}
	_, err := New(bad, nil)
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"node name", "listen", "peer", "key is 5 bytes", "nil store"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	noKey := good
	noKey.Key = nil
	if _, err := New(noKey, newStore(false)); err == nil {
		t.Error("no key without Insecure accepted")
	}
	noKey.Insecure = true
	if _, err := New(noKey, newStore(false)); err != nil {
		t.Errorf("Insecure without key: %v", err)
	}
}

// Entries published on either node reach the other, in publish order,
// with no duplicates, and the tables end up equal.
func TestPublishReachesPeerInOrder(t *testing.T) {
	a, b := pair(t, newStore(true), newStore(true), nil)
	a.start(t)
	b.start(t)
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))

	const n, clients = 20000, 1000 // each client updated 20 times
	go b.publishOwn(0, n/2, clients, 100)
	a.publish(0, n, clients)
	testutil.WaitFor(t, "B to apply A's entries", func() bool { return len(b.store.appliedCopy()) == n })
	testutil.WaitFor(t, "A to apply B's entries", func() bool { return len(a.store.appliedCopy()) == n/2 })
	got := b.store.appliedCopy()
	for i, e := range got {
		if want := testEntry(i, clients); e != want {
			t.Fatalf("B's apply #%d: %+v, want %+v", i, e, want)
		}
	}
	for i, e := range a.store.appliedCopy() {
		if want := testEntry(i, clients); e != (Entry{Cluster: want.Cluster + 100, Client: want.Client, Server: want.Server, Expires: want.Expires}) {
			t.Fatalf("A's apply #%d: %+v, want %+v", i, e, want)
		}
	}
	if err := b.store.diff(a.store); err != nil {
		t.Fatalf("tables differ: %v", err)
	}
	testutil.WaitWithin(t, 2*time.Second, "all acknowledged", func() bool { return a.r.Status().Acked == n })
	st := a.r.Status()
	if st.Sent != n || st.Received != n/2 || st.State != StateInSync || !st.PeerConnected || st.Peer != "lb2" || st.LagMs <= 0 {
		t.Fatalf("A's status %+v", st)
	}
}

// A pre-filled table reaches a peer that starts later, in one bulk, and
// BulkReceived closes.
func TestBulkOnConnect(t *testing.T) {
	sa := newStore(false)
	const n = 100000
	for i := range n {
		sa.put(testEntry(i, n))
	}
	a, b := pair(t, sa, newStore(false), nil)
	a.start(t)
	select {
	case <-b.r.BulkReceived():
		t.Fatal("BulkReceived closed before any peer connected")
	default:
	}
	b.start(t)
	select {
	case <-b.r.BulkReceived():
	case <-time.After(10 * time.Second):
		t.Fatal("B never received A's table")
	}
	if err := b.store.diff(sa); err != nil {
		t.Fatalf("after bulk: %v", err)
	}
	st := b.r.Status()
	if st.LastBulkEntries != n || !st.BulkDone || st.Received != n || st.LastBulkDuration <= 0 {
		t.Fatalf("B's status %+v", st)
	}
	// B's empty table counts as a bulk for A.
	select {
	case <-a.r.BulkReceived():
	case <-time.After(5 * time.Second):
		t.Fatal("A never received B's (empty) table")
	}
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))
	if st := a.r.Status(); st.Acked != n {
		t.Fatalf("A acked %d, want %d", st.Acked, n)
	}
}

// Cutting the connections mid-stream loses nothing: the sender resumes
// from the receiver's last applied sequence number, without a bulk, so B
// applies exactly A's publish sequence.
func TestConnectionCutResumes(t *testing.T) {
	a, b := pair(t, newStore(false), newStore(true), nil)
	a.start(t)
	b.start(t)
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))

	const n, clients, cuts = 60000, 5000, 6
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range cuts {
			time.Sleep(15 * time.Millisecond)
			if c%2 == 0 {
				a.r.killConns()
			} else {
				b.r.killConns()
			}
		}
	}()
	for i := 0; i < n; i += 100 { // paced, so the cuts land mid-stream
		a.publish(i, i+100, clients)
		time.Sleep(200 * time.Microsecond)
	}
	<-done
	testutil.WaitWithin(t, 10*time.Second, "B to apply everything", func() bool { return len(b.store.appliedCopy()) >= n })
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))
	if err := b.store.diff(a.store); err != nil {
		t.Fatalf("tables differ: %v", err)
	}
	st := a.r.Status()
	if st.Resumes == 0 || st.Resyncs != 1 {
		t.Fatalf("want resumes and only the first bulk; status %+v", st)
	}
	got := b.store.appliedCopy()
	if len(got) != n {
		t.Fatalf("B applied %d updates, want exactly %d (no loss, no duplicates)", len(got), n)
	}
	for i, e := range got {
		if want := testEntry(i, clients); e != want {
			t.Fatalf("apply #%d: %+v, want %+v", i, e, want)
		}
	}
}

// Peers with different keys never connect and apply nothing.
func TestWrongKeyRefused(t *testing.T) {
	sa := newStore(false)
	sa.put(testEntry(1, 10))
	a, b := pair(t, sa, newStore(false), func(name string, c *Config) {
		if name == "b" {
			c.Key = make([]byte, 32)
		}
	})
	a.start(t)
	b.start(t)
	testutil.WaitFor(t, "auth failures on both nodes", func() bool {
		return a.r.Status().Dropped[dropAuth] >= 2 && b.r.Status().Dropped[dropAuth] >= 2
	})
	a.publish(2, 3, 10)
	time.Sleep(50 * time.Millisecond)
	for _, n := range []*node{a, b} {
		st := n.r.Status()
		if st.PeerConnected || st.State != StateNotSynced || st.Received != 0 || b.store.len() != 0 {
			t.Errorf("%s: status %+v, %d entries", n.r.cfg.Node, st, n.store.len())
		}
		if !strings.Contains(st.Reason, "authentication") || !strings.Contains(n.logs.String(), "different cluster key") {
			t.Errorf("%s: reason %q (or the log) does not say why", n.r.cfg.Node, st.Reason)
		}
	}
}

// A peer with another config is refused on both sides and logged clearly.
func TestConfigHashMismatchRefused(t *testing.T) {
	a, b := pair(t, newStore(false), newStore(false), func(name string, c *Config) {
		if name == "b" {
			c.ConfigHash = "sha256:def"
		}
	})
	a.start(t)
	b.start(t)
	testutil.WaitFor(t, "config refusals on both nodes", func() bool {
		return a.r.Status().Dropped[dropConfig] >= 2 && b.r.Status().Dropped[dropConfig] >= 2
	})
	for _, n := range []*node{a, b} {
		st := n.r.Status()
		if st.State != StateNotSynced || st.PeerConnected || !strings.Contains(st.Reason, "sha256:def") {
			t.Errorf("%s: status %+v", n.r.cfg.Node, st)
		}
		if logs := n.logs.String(); !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "refusing to sync") {
			t.Errorf("%s: no clear error logged:\n%s", n.r.cfg.Node, logs)
		}
	}
}

// Garbage on the listen port is refused at once, without an answer, and
// counted; the pair still syncs. The garbage comes from a stranger's
// address one connection at a time, so none is turned away as busy
// instead of being read.
func TestGarbageDropped(t *testing.T) {
	a, b := pair(t, newStore(false), newStore(false), nil)
	b.start(t)
	junk := make([]byte, 4096)
	rand.Read(junk)
	inputs := [][]byte{
		junk,
		{0xff, 0xff, 0xff, 0xff, 1, 2, 3}, // absurd length
		frame(append(bytes.Clone(header), junk[:80]...)), // a hello of random bytes
		append([]byte{0, 0, 0, 5}, "HTTP/"...),
	}
	stranger := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
	for i, in := range inputs {
		if got := exchange(t, b.ln.Addr().String(), stranger, in); len(got) != 0 {
			t.Errorf("input %d answered with %d bytes", i, len(got))
		}
	}
	// Each was counted before its connection closed; the one hello is auth.
	if st := b.r.Status(); st.Dropped[dropAuth] != 1 || st.Dropped[dropHandshake] < 3 {
		t.Fatalf("garbage not counted: %v", st.Dropped)
	}
	a.start(t)
	a.publish(0, 10, 10)
	testutil.WaitFor(t, "IN SYNC after garbage", inSync(a, b))
	testutil.WaitWithin(t, 2*time.Second, "entries", func() bool { return b.store.len() == 10 })
}

// Status goes NOT SYNCED → SYNCING (while the peer's table is applied) →
// IN SYNC.
func TestStatusTransitions(t *testing.T) {
	sa := newStore(false)
	for i := range 100 {
		sa.put(testEntry(i, 100))
	}
	sb := newStore(false)
	gate := make(chan struct{})
	sb.gate = gate
	a, b := pair(t, sa, sb, nil)
	if st := b.r.Status(); st.State != StateNotSynced || st.Reason == "" {
		t.Fatalf("before start: %+v", st)
	}
	b.start(t)
	time.Sleep(50 * time.Millisecond)
	if st := b.r.Status(); st.State != StateNotSynced {
		t.Fatalf("peer down: %+v", st)
	}
	a.start(t)
	testutil.WaitFor(t, "B SYNCING", func() bool { return b.r.Status().State == StateSyncing })
	if st := b.r.Status(); !st.PeerConnected || st.BulkDone {
		t.Fatalf("syncing: %+v", st)
	}
	close(gate)
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))
	if st := b.r.Status(); !st.BulkDone || st.LastBulkEntries != 100 || st.Reason != "" {
		t.Fatalf("in sync: %+v", st)
	}
	// The peer going away is NOT SYNCED again.
	a.stop()
	testutil.WaitFor(t, "NOT SYNCED", func() bool { return b.r.Status().State == StateNotSynced })
}

// Publish never blocks while the peer is down; the overflow is counted
// and repaired by a full resync once the peer is back.
func TestPublishNeverBlocksPeerDown(t *testing.T) {
	a, b := pair(t, newStore(false), newStore(false), func(name string, c *Config) { c.QueueLen = 1000 })
	a.start(t)
	b.start(t)
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))
	b.stop()

	const n, clients = 200000, 50000
	began := time.Now()
	a.publish(0, n, clients)
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("publishing %d entries with the peer down took %v", n, d)
	}
	st := a.r.Status()
	if st.Dropped[dropQueue] == 0 || st.Queued > 1000 {
		t.Fatalf("overflow not counted or queue unbounded: %+v", st)
	}

	// B comes back (a new process: empty table, new listener on the same port).
	ln, err := net.Listen("tcp", b.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b2 := newNode(t, "lb2", ln, a.ln.Addr().String(), newStore(false), nil)
	b2.start(t)
	testutil.WaitWithin(t, 10*time.Second, "IN SYNC again", inSync(a, b2))
	if err := b2.store.diff(a.store); err != nil {
		t.Fatalf("after resync: %v", err)
	}
	if st := a.r.Status(); st.Resyncs < 2 {
		t.Fatalf("no resync counted: %+v", st)
	}
}

// An overflow while connected triggers a resync on the same connection.
func TestOverflowWhileConnectedResyncs(t *testing.T) {
	sb := newStore(false)
	a, b := pair(t, newStore(false), sb, func(name string, c *Config) { c.QueueLen = 500 })
	a.start(t)
	b.start(t)
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))
	a.publish(0, 50000, 20000) // far faster than 500 entries a batch delay
	testutil.WaitWithin(t, 10*time.Second, "tables equal", func() bool { return sb.diff(a.store) == nil })
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))
	if st := a.r.Status(); st.Dropped[dropQueue] == 0 || st.Resyncs < 2 {
		t.Fatalf("want an overflow and a resync: %+v", st)
	}
}

// Resync sends a full bulk that repairs what the Store's own event source
// lost (conntrack's event socket overflowing): entries the store holds
// but never published reach the peer.
func TestResyncSendsTheWholeStore(t *testing.T) {
	sa, sb := newStore(false), newStore(false)
	a, b := pair(t, sa, sb, nil)
	a.start(t)
	b.start(t)
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))
	before := a.r.Status().Resyncs
	for i := range 300 { // in the store, never published
		sa.Apply(testEntry(i, 300))
	}
	if sb.diff(sa) == nil {
		t.Fatal("the peer has entries that were never sent")
	}
	a.r.Resync()
	testutil.WaitFor(t, "tables equal after Resync", func() bool { return sb.diff(sa) == nil })
	if st := a.r.Status(); st.Resyncs != before+1 {
		t.Fatalf("resyncs %d, want %d", st.Resyncs, before+1)
	}
}
