package peer

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/internal/testutil"
)

// All traffic in these tests stays on 127.0.0.1.

var (
	keyA = bytes.Repeat([]byte{0xa1}, 32)
	keyB = bytes.Repeat([]byte{0xb2}, 16)
)

// freeAddr returns a 127.0.0.1 port free for both TCP and UDP, as
// memberlist binds both on the same port.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return addr
	}
	t.Fatal("no free port on 127.0.0.1")
	return ""
}

// testLogger writes memberlist's and our logs to the test log until the
// test ends: memberlist's Shutdown does not wait for an in-flight probe,
// which may still log afterwards.
func testLogger(t *testing.T) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done = true
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func start(t *testing.T, cfg Config) *Transport {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := tr.Start(ctx); err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := tr.Shutdown(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return tr
}

// pair starts two keyed transports that know each other.
func pair(t *testing.T, label string) (a, b *Transport, addrA, addrB string) {
	addrA, addrB = freeAddr(t), freeAddr(t)
	a = start(t, Config{NodeName: "lb1", Bind: addrA, Peers: []string{addrB}, Keys: [][]byte{keyA}, Label: label})
	b = start(t, Config{NodeName: "lb2", Bind: addrB, Peers: []string{addrA}, Keys: [][]byte{keyA}, Label: label})
	return a, b, addrA, addrB
}

// patience bounds the waits on memberlist and the kernel's UDP sockets
// (a join under a loaded machine takes seconds).
const patience = 10 * time.Second

// sendUntil sends adv from tr every 50ms until it arrives at to, and
// returns what arrived.
func sendUntil(t *testing.T, tr, to *Transport, adv Advert) Received {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if err := tr.SendAdvert(adv); err != nil {
			t.Fatalf("SendAdvert: %v", err)
		}
		select {
		case r := <-to.Adverts():
			return r
		case <-tick.C:
		case <-deadline:
			t.Fatalf("advert from %s never arrived", adv.Node)
		}
	}
}

// sentAs is want as tr sent it: with tr's epoch, and the sequence tr
// gave it (sendUntil may send it several times, each time with a new
// one, never below want's).
func sentAs(t *testing.T, tr *Transport, want, got Advert) Advert {
	t.Helper()
	if got.Seq < want.Seq {
		t.Fatalf("sequence %d below the one asked for, %d", got.Seq, want.Seq)
	}
	want.Seq, want.Epoch = got.Seq, tr.Epoch()
	return want
}

// testDelegate is a delegate as New builds it, for tests without sockets.
func testDelegate(self string, epoch uint64) *delegate {
	return &delegate{self: self, c: &counters{}, adverts: make(chan Received, AdvertQueueLen), now: time.Now,
		nodes: map[string]nodeInfo{}, epoch: epoch, fresh: newFreshness(), outbox: make(chan outMsg, 16),
		bind: "127.0.0.1:7946", log: slog.New(slog.DiscardHandler)}
}

func aliveMember(tr *Transport, name string) bool {
	for _, m := range tr.Members() {
		if m.Name == name && m.Alive {
			return true
		}
	}
	return false
}

func TestPairExchangesAdverts(t *testing.T) {
	a, b, addrA, addrB := pair(t, "tandem-test")
	testutil.WaitWithin(t, patience, "members see each other", func() bool { return aliveMember(a, "lb2") && aliveMember(b, "lb1") })
	if m := a.Members(); len(m) != 1 || m[0].Addr != addrB || m[0].State != "alive" {
		t.Fatalf("a.Members() = %+v, want only lb2 at %s", m, addrB)
	}

	sent := time.Unix(1767225600, 42)
	advA := Advert{Node: "lb1", Priority: 150, State: "MASTER", ConfigHash: "sha256:aa", Seq: 9, StateAge: time.Second, Sent: sent}
	advB := Advert{Node: "lb2", Priority: 100, State: "BACKUP", ConfigHash: "sha256:aa", Seq: 3, StateAge: 2 * time.Second, Sent: sent}
	gotB := sendUntil(t, a, b, advA)
	gotA := sendUntil(t, b, a, advB)
	advA, advB = sentAs(t, a, advA, gotB.Advert), sentAs(t, b, advB, gotA.Advert)
	if !sameAdvert(gotB.Advert, advA) || gotB.From != addrA || gotB.At.IsZero() {
		t.Fatalf("b received %+v, want %+v from %s", gotB, advA, addrA)
	}
	if !sameAdvert(gotA.Advert, advB) || gotA.From != addrB {
		t.Fatalf("a received %+v, want %+v from %s", gotA, advB, addrB)
	}
	if s := a.Stats(); s.AdvertsSent == 0 || s.AdvertsReceived == 0 {
		t.Fatalf("a stats %+v", s)
	}

	// Zero fields are filled in: our name, a fresh sequence number, now.
	got := sendUntil(t, a, b, Advert{State: "MASTER", Priority: 150})
	if got.Advert.Node != "lb1" || got.Advert.Seq == 0 || time.Since(got.Advert.Sent) > 10*time.Second {
		t.Fatalf("defaults not filled in: %+v", got.Advert)
	}
}

func TestSelfAdvertDropped(t *testing.T) {
	a, b, _, _ := pair(t, "")
	// b claims to be lb1: a drops it as its own.
	for range 5 {
		if err := b.SendAdvert(Advert{Node: "lb1", State: "MASTER"}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitWithin(t, patience, "self drop counted", func() bool { return a.Stats().Dropped[DropSelf] > 0 })
	if len(a.Adverts()) != 0 {
		t.Fatal("self advert delivered")
	}
}

// TestRejectsForeignTraffic: a node with the wrong key or label, and raw
// garbage, get nothing delivered, are counted, and the pair keeps working.
func TestRejectsForeignTraffic(t *testing.T) {
	a, b, addrA, _ := pair(t, "tandem-test")
	tests := []struct {
		name   string
		cfg    Config
		reason string
	}{
		{"wrong key", Config{Keys: [][]byte{keyB}, Label: "tandem-test"}, DropDecrypt},
		{"wrong label", Config{Keys: [][]byte{keyA}, Label: "other-pair"}, DropLabel},
		{"no label", Config{Keys: [][]byte{keyA}}, DropLabel},
		{"unencrypted", Config{Insecure: true, Label: "tandem-test"}, DropDecrypt},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.NodeName = fmt.Sprintf("intruder%d", i)
			tt.cfg.Bind = freeAddr(t)
			tt.cfg.Peers = []string{addrA}
			x := start(t, tt.cfg)
			before := a.Stats().Dropped[tt.reason]
			for range 10 {
				if err := x.SendAdvert(Advert{State: "MASTER", Priority: 255}); err != nil {
					t.Fatal(err)
				}
			}
			testutil.WaitWithin(t, patience, tt.reason+" drops counted", func() bool { return a.Stats().Dropped[tt.reason] >= before+10 })
			assertWorking(t, a, b)
			for _, m := range a.Members() {
				if m.Name == tt.cfg.NodeName {
					t.Fatalf("intruder became a member: %+v", m)
				}
			}
		})
	}

	t.Run("garbage", func(t *testing.T) {
		before := a.Stats().Dropped
		conn, err := net.Dial("udp", addrA)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, g := range [][]byte{{}, {0}, {244}, {244, 200, 1}, {1, 2, 3}, bytes.Repeat([]byte{0xff}, 1500), []byte("TDMA\x01hello")} {
			if _, err := conn.Write(g); err != nil {
				t.Fatal(err)
			}
		}
		testutil.WaitWithin(t, patience, "garbage counted", func() bool {
			after := a.Stats().Dropped
			return after[DropDecrypt]+after[DropLabel]+after[DropOther] >= before[DropDecrypt]+before[DropLabel]+before[DropOther]+7
		})
		assertWorking(t, a, b)
	})
}

// assertWorking checks that a still receives b's adverts, and nothing else
// was delivered before them.
func assertWorking(t *testing.T, a, b *Transport) {
	t.Helper()
	got := sendUntil(t, b, a, Advert{Node: "lb2", State: "BACKUP", Priority: 100})
	if got.Advert.Node != "lb2" {
		t.Fatalf("a received %+v", got.Advert)
	}
	// Drain what sendUntil may have queued.
	for len(a.Adverts()) > 0 {
		if r := <-a.Adverts(); r.Advert.Node != "lb2" {
			t.Fatalf("a received foreign advert %+v", r.Advert)
		}
	}
}

func TestInsecurePair(t *testing.T) {
	addrA, addrB := freeAddr(t), freeAddr(t)
	a := start(t, Config{NodeName: "lb1", Bind: addrA, Peers: []string{addrB}, Insecure: true})
	b := start(t, Config{NodeName: "lb2", Bind: addrB, Peers: []string{addrA}, Insecure: true})
	testutil.WaitWithin(t, patience, "members", func() bool { return aliveMember(a, "lb2") })
	adv := Advert{Node: "lb2", State: "BACKUP", Priority: 1, Seq: 5, Sent: time.Unix(1767225600, 1)}
	if got := sendUntil(t, b, a, adv); !sameAdvert(got.Advert, sentAs(t, b, adv, got.Advert)) {
		t.Fatalf("got %+v", got.Advert)
	}

	// Garbage on an unencrypted node is dropped by memberlist as "other".
	conn, err := net.Dial("udp", addrA)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte{200, 1, 2})
	testutil.WaitWithin(t, patience, "garbage counted", func() bool { return a.Stats().Dropped[DropOther] > 0 })
}

func TestQueueFullDrops(t *testing.T) {
	a, b, _, _ := pair(t, "")
	testutil.WaitWithin(t, patience, "queue full", func() bool {
		b.SendAdvert(Advert{State: "BACKUP"})
		return a.Stats().Dropped[DropQueueFull] > 0
	})
	if n := len(a.Adverts()); n != AdvertQueueLen {
		t.Fatalf("queue holds %d, want %d", n, AdvertQueueLen)
	}
}

func TestNewValidates(t *testing.T) {
	ok := Config{NodeName: "lb1", Bind: "127.0.0.1:7946", Peers: []string{"127.0.0.1:7947"}, Keys: [][]byte{keyA}}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no key", func(c *Config) { c.Keys = nil }, "no cluster key"},
		{"empty keys", func(c *Config) { c.Keys = [][]byte{} }, "no cluster key"},
		{"short key", func(c *Config) { c.Keys = [][]byte{keyA, make([]byte, 10)} }, "keys[1]"},
		{"no name", func(c *Config) { c.NodeName = "" }, "node name"},
		{"bad bind", func(c *Config) { c.Bind = "localhost:7946" }, "bind"},
		{"port 0", func(c *Config) { c.Bind = "127.0.0.1:0" }, "port"},
		{"bad peer", func(c *Config) { c.Peers = []string{"127.0.0.1"} }, "peers[0]"},
		{"self peer", func(c *Config) { c.Peers = []string{"127.0.0.1:7946"} }, "own bind"},
		{"long label", func(c *Config) { c.Label = strings.Repeat("l", 256) }, "label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want error containing %q", err, tt.want)
			}
		})
	}
	insecure := ok
	insecure.Keys, insecure.Insecure = nil, true
	tr, err := New(insecure)
	if err != nil {
		t.Fatalf("insecure: %v", err)
	}
	if tr.AdvertInterval() != DefaultAdvertInterval {
		t.Fatalf("AdvertInterval %v", tr.AdvertInterval())
	}
	if m := tr.Members(); len(m) != 1 || m[0].State != "unknown" || m[0].Addr != "127.0.0.1:7947" {
		t.Fatalf("Members before start: %+v", m)
	}
}

// TestPeerRestart: one side shuts down and a new run binds the same port;
// adverts flow again both ways and membership heals.
func TestPeerRestart(t *testing.T) {
	a, b, addrA, addrB := pair(t, "tandem-test")
	testutil.WaitWithin(t, patience, "members", func() bool { return aliveMember(a, "lb2") })
	sendUntil(t, a, b, Advert{State: "MASTER"})

	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitWithin(t, patience, "a sees lb2 dead", func() bool { return !aliveMember(a, "lb2") })
	if err := a.SendAdvert(Advert{State: "MASTER"}); err != nil {
		t.Fatalf("send to a dead peer: %v", err)
	}

	b2 := start(t, Config{NodeName: "lb2", Bind: addrB, Peers: []string{addrA}, Keys: [][]byte{keyA}, Label: "tandem-test"})
	adv := Advert{Node: "lb1", State: "MASTER", Priority: 150, Seq: 77, Sent: time.Unix(1767225600, 2)}
	if got := sendUntil(t, a, b2, adv); !sameAdvert(got.Advert, sentAs(t, a, adv, got.Advert)) {
		t.Fatalf("b2 got %+v", got.Advert)
	}
	drain(a)
	sendUntil(t, b2, a, Advert{Node: "lb2", State: "BACKUP"})
	testutil.WaitWithin(t, patience, "a sees lb2 alive again", func() bool { return aliveMember(a, "lb2") })
}

// TestLeave: a leaving node is seen as gone at once, yet adverts (such as
// a priority-0 goodbye) still reach the peer.
func TestLeave(t *testing.T) {
	a, b, _, _ := pair(t, "")
	testutil.WaitWithin(t, patience, "members", func() bool { return aliveMember(a, "lb2") })
	if err := b.Leave(time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	testutil.WaitWithin(t, patience, "a sees lb2 gone", func() bool { return !aliveMember(a, "lb2") })
	drain(a)
	bye := Advert{Node: "lb2", State: "BACKUP", Priority: 0, Seq: 1, Sent: time.Unix(1767225600, 3)}
	if got := sendUntil(t, b, a, bye); !sameAdvert(got.Advert, sentAs(t, b, bye, got.Advert)) {
		t.Fatalf("got %+v", got.Advert)
	}
	// Leaving twice is harmless.
	if err := b.Leave(time.Second); err != nil {
		t.Fatalf("second Leave: %v", err)
	}
}

func drain(tr *Transport) {
	for len(tr.Adverts()) > 0 {
		<-tr.Adverts()
	}
}

func TestConcurrentSend(t *testing.T) {
	a, b, _, _ := pair(t, "")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				a.SendAdvert(Advert{State: "MASTER"})
				a.Stats()
				a.Members()
			}
		})
	}
	wg.Wait()
	// The first adverts of a new epoch only start its verification.
	testutil.WaitWithin(t, patience, "adverts arrive", func() bool {
		a.SendAdvert(Advert{State: "MASTER"})
		return b.Stats().AdvertsReceived > 0
	})
}

// TestPeerRenamed: a new run at the same address under another name
// replaces the old member instead of leaving a dead twin behind.
func TestPeerRenamed(t *testing.T) {
	a, b, addrA, addrB := pair(t, "")
	testutil.WaitWithin(t, patience, "members", func() bool { return aliveMember(a, "lb2") })
	if err := b.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	start(t, Config{NodeName: "lb2-new", Bind: addrB, Peers: []string{addrA}, Keys: [][]byte{keyA}})
	testutil.WaitWithin(t, patience, "only lb2-new", func() bool {
		m := a.Members()
		return len(m) == 1 && m[0].Name == "lb2-new" && m[0].Alive && m[0].Addr == addrB
	})
}

// TestSameNameOnBothBoxes: two boxes given the same node name each see
// the other as a name clash (after verifying its epoch), deliver none of
// its adverts, and count them as "self".
func TestSameNameOnBothBoxes(t *testing.T) {
	addrA, addrB := freeAddr(t), freeAddr(t)
	a := start(t, Config{NodeName: "lb1", Bind: addrA, Peers: []string{addrB}, Keys: [][]byte{keyA}})
	b := start(t, Config{NodeName: "lb1", Bind: addrB, Peers: []string{addrA}, Keys: [][]byte{keyA}})
	testutil.WaitWithin(t, patience, "both see the clash", func() bool {
		a.SendAdvert(Advert{State: "MASTER", Priority: 150})
		b.SendAdvert(Advert{State: "MASTER", Priority: 100})
		return a.NameClash().From == addrB && b.NameClash().From == addrA
	})
	if c := a.NameClash(); time.Since(c.At) > 5*time.Second {
		t.Fatalf("clash time %v", c.At)
	}
	if len(a.Adverts()) != 0 || len(b.Adverts()) != 0 || a.Stats().Dropped[DropSelf] == 0 {
		t.Fatalf("delivered %d/%d, self drops %d", len(a.Adverts()), len(b.Adverts()), a.Stats().Dropped[DropSelf])
	}
	// Our own adverts coming back (a loop, a reflector) are no clash.
	d := testDelegate("lb1", 1)
	own, _ := Advert{Node: "lb1", State: "MASTER", Epoch: 1, Seq: 1}.MarshalBinary()
	d.NotifyMsg(encodeEnvelope(msgAdvert, d.bind, own))
	if d.clash.From != "" || len(d.outbox) != 0 {
		t.Fatalf("own advert taken for a clash: %+v", d.clash)
	}
}
