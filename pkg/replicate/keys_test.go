package replicate

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flynn/noise"

	"github.com/tandem-lb/tandem/internal/testutil"
)

// TestKeyRotation rotates the pair's key in the README's three steps with
// SetKeys, cutting the connections after each step so both directions
// authenticate afresh, and shows updates flowing at every step. Dropping
// the old key closes a connection still authenticated with it.
func TestKeyRotation(t *testing.T) {
	oldKey, newKey := testKey, bytes.Repeat([]byte{0x5e}, 24)
	a, b := pair(t, newStore(false), newStore(false), nil)
	a.start(t)
	b.start(t)
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))

	steps := []struct {
		name       string
		setA, setB [][]byte
	}{
		{"1a: new accepted on a", [][]byte{oldKey, newKey}, nil},
		{"1b: new accepted on b", nil, [][]byte{oldKey, newKey}},
		{"2a: new primary on a", [][]byte{newKey, oldKey}, nil},
		{"2b: new primary on b", nil, [][]byte{newKey, oldKey}},
		{"3a: old dropped on a", [][]byte{newKey}, nil},
		{"3b: old dropped on b", nil, [][]byte{newKey}},
	}
	next := 0
	for _, st := range steps {
		for _, ch := range []struct {
			n    *node
			keys [][]byte
		}{{a, st.setA}, {b, st.setB}} {
			if ch.keys != nil {
				if err := ch.n.r.SetKeys(ch.keys); err != nil {
					t.Fatalf("%s: SetKeys: %v", st.name, err)
				}
			}
		}
		a.r.killConns()
		b.r.killConns()
		authA, authB := a.r.Status().Dropped[dropAuth], b.r.Status().Dropped[dropAuth]
		a.publish(next, next+10, 1000)
		next += 10
		testutil.WaitFor(t, st.name+": updates reach b", func() bool { return b.store.len() == next })
		testutil.WaitFor(t, st.name+": IN SYNC", inSync(a, b))
		if a.r.Status().Dropped[dropAuth] != authA || b.r.Status().Dropped[dropAuth] != authB {
			t.Fatalf("%s: authentication failures during a correct rotation: %v %v", st.name, a.r.Status().Dropped, b.r.Status().Dropped)
		}
	}

	// A node still on the old key only is refused now: a counts it as
	// auth, and c, which gets no answer to its hello, says so.
	authA := a.r.Status().Dropped[dropAuth]
	c := newNode(t, "lb3", listen(t), a.ln.Addr().String(), newStore(false), func(c *Config) { c.Key = oldKey })
	c.start(t)
	testutil.WaitFor(t, "old-key node refused", func() bool { return a.r.Status().Dropped[dropAuth] > authA })
	testutil.WaitFor(t, "old-key node told", func() bool {
		return strings.Contains(c.r.Status().Reason, "hung up after our hello")
	})
	if st := c.r.Status(); st.PeerConnected || st.Sent != 0 {
		t.Fatalf("old-key node: %+v", st)
	}
}

// TestSetKeysClosesStaleConnection: an established stream authenticated
// with a key that SetKeys removes is closed at once, not left running.
func TestSetKeysClosesStaleConnection(t *testing.T) {
	a, b := pair(t, newStore(false), newStore(false), nil)
	a.start(t)
	b.start(t)
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))
	b.r.mu.Lock()
	inConn := b.r.inConn
	b.r.mu.Unlock()
	other := bytes.Repeat([]byte{0x77}, 32)
	if err := b.r.SetKeys([][]byte{other}); err != nil {
		t.Fatal(err)
	}
	inConn.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := inConn.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("old stream still open after its key was removed: %v", err)
	}
	testutil.WaitFor(t, "a refused under the new key", func() bool { return a.r.Status().Dropped[dropAuth] >= 1 })
	if b.r.Status().PeerConnected {
		t.Fatal("b still connected with a peer lacking its key")
	}
}

func TestSetKeysValidates(t *testing.T) {
	a, _ := pair(t, newStore(false), newStore(false), nil)
	for _, bad := range [][][]byte{nil, {[]byte("short")}, {testKey, testKey}} {
		if err := a.r.SetKeys(bad); err == nil {
			t.Errorf("SetKeys(%d keys) accepted", len(bad))
		}
	}
	ins, _ := pair(t, newStore(false), newStore(false), func(_ string, c *Config) { c.Key, c.Insecure = nil, true })
	if err := ins.r.SetKeys([][]byte{testKey}); !errors.Is(err, ErrInsecure) {
		t.Errorf("insecure SetKeys = %v", err)
	}
}

// TestWrongKeyPeerInjectsNothing: a client holding another key sends its
// hello and, without waiting, a CONFIG and a bulk sealed under keys of its
// own; it is refused at its hello, gets no answer (not a byte to work
// on), nothing reaches the store, and the refusal is counted as auth.
func TestWrongKeyPeerInjectsNothing(t *testing.T) {
	_, b := pair(t, newStore(false), newStore(false), nil)
	b.start(t)
	wrong, err := deriveKeys(bytes.Repeat([]byte{0x66}, 32))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_, hello := testHello(t, wrong.psk, "mallory", header, header, nil)
		var wire bytes.Buffer
		bw := bufio.NewWriter(&wire)
		s := newSession(nil, nil, bw, wrong.master, noise.UnsafeNewCipherState(suite, [32]byte(wrong.psk), 0), nil, "lb2")
		s.send(appendConfig(nil, "sha256:abc"))
		s.send(appendBulkBegin(nil, 7, bulkFull))
		s.send(append([]byte{msgBulkBatch}, appendEntry(nil, testEntry(1, 10), 0)...))
		s.send(binary1(msgBulkEnd, 1))
		bw.Flush()
		if got := exchange(t, b.ln.Addr().String(), nil, append(frame(hello), wire.Bytes()...)); len(got) != 0 {
			t.Fatalf("attempt %d: the node answered a wrong-key hello with %d bytes", i, len(got))
		}
	}
	testutil.WaitFor(t, "auth refusals counted", func() bool { return b.r.Status().Dropped[dropAuth] >= 3 })
	if n, st := b.store.len(), b.r.Status(); n != 0 || st.Received != 0 || st.BulkDone {
		t.Fatalf("wrong-key peer changed something: %d entries, %+v", n, st)
	}
}

// binary1 is a message of one type byte and one uvarint below 128.
func binary1(typ byte, v byte) []byte { return []byte{typ, v} }

// panicStore panics on the first Apply, like a bug would.
type panicStore struct {
	*memStore
	once sync.Once
}

func (p *panicStore) Apply(e Entry) {
	p.once.Do(func() { panic("apply exploded") })
	p.memStore.Apply(e)
}

// TestPanicDropsConnectionNotNode: a panic while applying the peer's
// stream drops that connection (logged, counted as "panic"); the node
// lives on, the peer reconnects and the tables converge.
func TestPanicDropsConnectionNotNode(t *testing.T) {
	sa := newStore(false)
	for i := range 5 {
		sa.put(testEntry(i, 10))
	}
	la, lb := listen(t), listen(t)
	a := newNode(t, "lb1", la, lb.Addr().String(), sa, nil)
	inner := newStore(false)
	b := newNode(t, "lb2", lb, la.Addr().String(), &panicStore{memStore: inner}, nil)
	a.start(t)
	b.start(t)
	testutil.WaitFor(t, "panic counted", func() bool { return b.r.Status().Dropped[dropPanic] == 1 })
	testutil.WaitFor(t, "IN SYNC after the panic", inSync(a, b))
	testutil.WaitWithin(t, 2*time.Second, "entries", func() bool { return inner.len() == 5 })
	if !strings.Contains(b.logs.String(), "apply exploded") {
		t.Errorf("panic not logged: %s", b.logs.String())
	}
}
