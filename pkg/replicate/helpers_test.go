package replicate

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

// memStore is an in-memory Store that also records the order of applies.
type memStore struct {
	mu      sync.Mutex
	m       map[storeKey]Entry
	applied []Entry // every Apply, in order (when record is set)
	record  bool
	gate    chan struct{} // when non-nil, Apply waits for it to close
}

type storeKey struct {
	cluster uint16
	client  netip.Prefix
}

func newStore(record bool) *memStore {
	return &memStore{m: map[storeKey]Entry{}, record: record}
}

func (s *memStore) Apply(e Entry) {
	if g := s.gate; g != nil {
		<-g
	}
	s.mu.Lock()
	s.m[storeKey{e.Cluster, e.Client}] = e
	if s.record {
		s.applied = append(s.applied, e)
	}
	s.mu.Unlock()
}

// put is the node's own insert (before Publish).
func (s *memStore) put(e Entry) { s.mu.Lock(); s.m[storeKey{e.Cluster, e.Client}] = e; s.mu.Unlock() }

func (s *memStore) Snapshot(fn func(Entry) bool) {
	s.mu.Lock()
	all := make([]Entry, 0, len(s.m))
	for _, e := range s.m {
		all = append(all, e)
	}
	s.mu.Unlock()
	for _, e := range all {
		if !fn(e) {
			return
		}
	}
}

func (s *memStore) len() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.m) }

func (s *memStore) appliedCopy() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Entry(nil), s.applied...)
}

// sameAs reports the first difference between s's table and want's.
func (s *memStore) diff(want *memStore) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	want.mu.Lock()
	defer want.mu.Unlock()
	if len(s.m) != len(want.m) {
		return fmt.Errorf("%d entries, want %d", len(s.m), len(want.m))
	}
	for k, w := range want.m {
		if g, ok := s.m[k]; !ok || g != w {
			return fmt.Errorf("entry %v: got %+v (present %v), want %+v", k, g, ok, w)
		}
	}
	return nil
}

// testEntry is entry i: clients cycle over n /32 prefixes of 100.64.0.0/10,
// Expires = i so later updates of a client are recognisable.
func testEntry(i, n int) Entry {
	c := i % n
	a := netip.AddrFrom4([4]byte{100, 64 | byte(c>>16), byte(c >> 8), byte(c)})
	return Entry{Cluster: uint16(c % 3), Client: netip.PrefixFrom(a, 32), Server: uint16(i % 7), Expires: int64(i)}
}

var testKey = bytes.Repeat([]byte{7}, 32)

// node is a Replicator running on a loopback listener.
type node struct {
	r      *Replicator
	store  *memStore // nil unless the Store is one
	ln     net.Listener
	cancel context.CancelFunc
	done   chan struct{}
	logs   *logWriter
}

// listen reserves a loopback listener for a node to be built later.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// newNode builds (but does not start) a Replicator on ln that dials peer.
func newNode(t testing.TB, name string, ln net.Listener, peer string, store Store, mod func(*Config)) *node {
	t.Helper()
	lw := &logWriter{}
	cfg := Config{Node: name, Listen: ln.Addr().String(), Peer: peer, Key: testKey,
		ConfigHash: "sha256:abc", Logger: slog.New(slog.NewTextHandler(lw, nil))}
	if os.Getenv("TANDEM_TEST_LOGS") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", name)
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg, store)
	if err != nil {
		t.Fatal(err)
	}
	r.listener = ln
	r.backoffMin, r.backoffMax = 10*time.Millisecond, 100*time.Millisecond
	r.heartbeat, r.timeout = 200*time.Millisecond, 2*time.Second
	ms, _ := store.(*memStore)
	return &node{r: r, store: ms, ln: ln, logs: lw}
}

// start runs the node until the test ends (or stop).
func (n *node) start(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan struct{})
	go func() {
		defer close(n.done)
		if err := n.r.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(n.stop)
}

func (n *node) stop() {
	if n.cancel != nil {
		n.cancel()
		<-n.done
	}
}

// logWriter makes a bytes.Buffer safe for concurrent slog handlers.
type logWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// pair builds nodes A and B wired to each other (not started).
func pair(t testing.TB, sa, sb *memStore, mod func(name string, c *Config)) (*node, *node) {
	la, lb := listen(t), listen(t)
	ma := func(c *Config) {
		if mod != nil {
			mod("a", c)
		}
	}
	mb := func(c *Config) {
		if mod != nil {
			mod("b", c)
		}
	}
	return newNode(t, "lb1", la, lb.Addr().String(), sa, ma), newNode(t, "lb2", lb, la.Addr().String(), sb, mb)
}

func inSync(ns ...*node) func() bool {
	return func() bool {
		for _, n := range ns {
			if n.r.Status().State != StateInSync {
				return false
			}
		}
		return true
	}
}
