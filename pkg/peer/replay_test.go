package peer

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
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

// replay sends every captured packet, in order, to each address.
func replay(t *testing.T, pkts [][]byte, to ...string) {
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
			if _, err := c.WriteToUDP(p, ua); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond) // as the master sent them, only faster
		}
	}
}

// expectNothing fails if tr delivers an advert within d.
func expectNothing(t *testing.T, tr *Transport, d time.Duration, what string) {
	t.Helper()
	select {
	case r := <-tr.Adverts():
		t.Fatalf("%s: replayed advert delivered: %+v", what, r.Advert)
	case <-time.After(d):
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
	for range 20 {
		if err := a.SendAdvert(master); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	eventually(t, "the capture", func() bool { return len(tp.captured()) >= 21 })
	eventually(t, "lb2 hears the master", func() bool { return b.Stats().AdvertsReceived >= 21 })
	pkts := tp.captured()
	if err := a.Shutdown(); err != nil { // the master dies
		t.Fatal(err)
	}
	drain(b)

	before := b.Stats().Dropped
	replay(t, pkts, at("127.0.0.3"), at("127.0.0.4"))
	expectNothing(t, b, 300*time.Millisecond, "live backup")
	after := b.Stats().Dropped
	if got := after[DropReplay] + after[DropDuplicate] - before[DropReplay] - before[DropDuplicate]; got < 2*20 {
		t.Fatalf("%d replayed adverts counted, want at least %d (dropped %v)", got, 2*20, after)
	}

	// The backup restarts: it knows no epoch of lb1's any more.
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	b2 := start(t, cfgB)
	replay(t, pkts, at("127.0.0.3"), at("127.0.0.4"))
	expectNothing(t, b2, 500*time.Millisecond, "restarted backup")
	if d := b2.Stats().Dropped; d[DropUnverified] == 0 {
		t.Fatalf("replays to the restarted backup not counted as unverified: %v", d)
	}

	// The master comes back (a new epoch): it answers the challenge and
	// is heard again.
	a2 := start(t, cfgA)
	if r := sendUntil(t, a2, b2, master); r.Advert.Epoch != a2.Epoch() || r.Advert.Epoch == a.Epoch() {
		t.Fatalf("delivered epoch %x, want the new run's %x", r.Advert.Epoch, a2.Epoch())
	}
}
