package peer

import (
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/tandem-lb/tandem/internal/testutil"
)

// tap is a UDP socket that keeps every packet it receives: a replayer's
// capture. lb1 sends it everything it sends its peer, as a heartbeat
// path whose far end is the tap.
type tap struct {
	conn *net.UDPConn
	mu   sync.Mutex
	pkts [][]byte
	done chan struct{}
}

func newTap(t *testing.T, ip string) *tap {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{conn: c, done: make(chan struct{})}
	go func() {
		defer close(tp.done)
		buf := make([]byte, 65536)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			tp.mu.Lock()
			tp.pkts = append(tp.pkts, append([]byte(nil), buf[:n]...))
			tp.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close(); <-tp.done })
	return tp
}

func (tp *tap) captured() [][]byte {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([][]byte(nil), tp.pkts...)
}

// replay sends every captured packet, in order, to each address of tr,
// each once tr has counted the one before (delivered or dropped): as the
// master sent them, only faster, and never faster than tr reads, so none
// is lost in a socket buffer and every one must be accounted for.
func replay(t *testing.T, tr *Transport, pkts [][]byte, to ...string) {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, addr := range to {
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			n := seen(tr)
			if _, err := c.WriteToUDP(p, ua); err != nil {
				t.Fatal(err)
			}
			testutil.WaitWithin(t, patience, "the replayed packet counted", func() bool { return seen(tr) > n })
		}
	}
}

// seen is every advert tr delivered or dropped.
func seen(tr *Transport) uint64 {
	s := tr.Stats()
	n := s.AdvertsReceived
	for _, d := range s.Dropped {
		n += d
	}
	return n
}

// expectNothing fails if tr delivered an advert; after replay, every
// replayed packet has been counted, so none can still come.
func expectNothing(t *testing.T, tr *Transport, what string) {
	t.Helper()
	select {
	case r := <-tr.Adverts():
		t.Fatalf("%s: replayed advert delivered: %+v", what, r.Advert)
	default:
	}
}

// TestReplayedAdvertsDropped is the replayer attack: someone on the path
// captured the master's encrypted adverts and, once the master is dead,
// replays them to the backup (so it never takes over), on the main
// address and on the second heartbeat path. Nothing is delivered, every
// copy is counted, and a backup that restarted meanwhile (and so has no
// memory of the master's epoch) is not fooled either: its challenge goes
// unanswered. A master that really restarts is verified and heard.
func TestReplayedAdvertsDropped(t *testing.T) {
	// lb1 on 127.0.0.1 (its path bind 127.0.0.2 leads to the tap);
	// lb2 on 127.0.0.3, its second path listening on 127.0.0.4.
	port := freePortOn(t, "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")
	at := func(ip string) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }
	tp := newTap(t, "127.0.0.9")
	cfgA := Config{NodeName: "lb1", Bind: at("127.0.0.1"), Peers: []string{at("127.0.0.3")},
		Paths: []Path{{Bind: at("127.0.0.2"), Peer: tp.conn.LocalAddr().String()}}, Keys: [][]byte{keyA}, Label: "replay"}
	cfgB := Config{NodeName: "lb2", Bind: at("127.0.0.3"), Peers: []string{at("127.0.0.1")},
		Paths: []Path{{Bind: at("127.0.0.4"), Peer: at("127.0.0.2")}}, Keys: [][]byte{keyA}, Label: "replay"}
	a := start(t, cfgA)
	b := start(t, cfgB)

	master := Advert{State: "MASTER", Priority: 200}
	sendUntil(t, a, b, master)
	// The capture: 20 adverts, each sent once the tap has the one before.
	first := len(tp.captured())
	for range 20 {
		n := len(tp.captured())
		if err := a.SendAdvert(master); err != nil {
			t.Fatal(err)
		}
		testutil.WaitWithin(t, patience, "the advert captured", func() bool { return len(tp.captured()) > n })
	}
	testutil.WaitWithin(t, patience, "lb2 hears the master", func() bool { return b.Stats().AdvertsReceived >= 21 })
	pkts := tp.captured()[first:]
	if err := a.Shutdown(); err != nil { // the master dies
		t.Fatal(err)
	}
	drain(b)

	before := b.Stats().Dropped
	replay(t, b, pkts, at("127.0.0.3"), at("127.0.0.4"))
	expectNothing(t, b, "live backup")
	after := b.Stats().Dropped
	if got := after[DropReplay] + after[DropDuplicate] - before[DropReplay] - before[DropDuplicate]; got != uint64(2*len(pkts)) {
		t.Fatalf("%d replayed adverts counted as replays, want %d (dropped %v)", got, 2*len(pkts), after)
	}

	// The backup restarts: it knows no epoch of lb1's any more.
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	b2 := start(t, cfgB)
	replay(t, b2, pkts, at("127.0.0.3"), at("127.0.0.4"))
	expectNothing(t, b2, "restarted backup")
	if d := b2.Stats().Dropped; d[DropUnverified] != uint64(2*len(pkts)) {
		t.Fatalf("replays to the restarted backup: %d counted as unverified, want %d: %v", d[DropUnverified], 2*len(pkts), d)
	}

	// The master comes back (a new epoch): it answers the challenge and
	// is heard again.
	a2 := start(t, cfgA)
	if r := sendUntil(t, a2, b2, master); r.Advert.Epoch != a2.Epoch() || r.Advert.Epoch == a.Epoch() {
		t.Fatalf("delivered epoch %x, want the new run's %x", r.Advert.Epoch, a2.Epoch())
	}
}
