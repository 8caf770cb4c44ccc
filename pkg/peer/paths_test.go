package peer

import (
	"net"
	"strconv"
	"testing"

	"github.com/tandem-lb/tandem/internal/testutil"
)

// freePortOn returns a port free for TCP and UDP on every one of ips.
func freePortOn(t *testing.T, ips ...string) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ok := true
		for _, ip := range ips {
			addr := net.JoinHostPort(ip, strconv.Itoa(port))
			tl, err1 := net.Listen("tcp", addr)
			ul, err2 := net.ListenPacket("udp", addr)
			if tl != nil {
				tl.Close()
			}
			if ul != nil {
				ul.Close()
			}
			if err1 != nil || err2 != nil {
				ok = false
			}
		}
		if ok {
			return port
		}
	}
	t.Fatal("no port free on every address")
	return 0
}

// TestAdvertsTakeEveryPath: with a second path, each advert arrives once
// per path, is delivered once and its second copy counted as a
// duplicate; and when the main peer address leads nowhere, adverts still
// arrive over the path.
func TestAdvertsTakeEveryPath(t *testing.T) {
	// lb1 main 127.0.0.1, path 127.0.0.2; lb2 main 127.0.0.3, path 127.0.0.4.
	port := freePortOn(t, "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
	at := func(ip string) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }
	a := start(t, Config{NodeName: "lb1", Bind: at("127.0.0.1"), Peers: []string{at("127.0.0.3")},
		Paths: []Path{{Bind: at("127.0.0.2"), Peer: at("127.0.0.4")}}, Keys: [][]byte{keyA}, Label: "paths"})
	b := start(t, Config{NodeName: "lb2", Bind: at("127.0.0.3"), Peers: []string{at("127.0.0.1")},
		Paths: []Path{{Bind: at("127.0.0.4"), Peer: at("127.0.0.2")}}, Keys: [][]byte{keyA}, Label: "paths"})
	sendUntil(t, a, b, Advert{State: "MASTER", Priority: 150})
	// Every copy of sendUntil's adverts (one per path) has arrived.
	testutil.WaitWithin(t, patience, "the second copies of sendUntil's adverts", func() bool {
		return seen(b) == a.Stats().AdvertsSent
	})
	drain(b)
	before := b.Stats()
	if err := a.SendAdvert(Advert{State: "MASTER", Priority: 150}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitWithin(t, patience, "the advert over both paths", func() bool {
		s := b.Stats()
		return s.AdvertsReceived >= before.AdvertsReceived+1 && s.Dropped[DropDuplicate] >= before.Dropped[DropDuplicate]+1
	})
	// Both copies are in: a second delivery could only have been one of them.
	if n := b.Stats().AdvertsReceived; n != before.AdvertsReceived+1 {
		t.Fatalf("one advert delivered %d times", n-before.AdvertsReceived)
	}

	// lb3 sends its main adverts to an address where nobody listens; only
	// the path reaches lb2's path address.
	c := start(t, Config{NodeName: "lb3", Bind: at("127.0.0.5"), Peers: []string{at("127.0.0.6")},
		Paths: []Path{{Bind: at("127.0.0.7"), Peer: at("127.0.0.4")}}, Keys: [][]byte{keyA}, Label: "paths"})
	drain(b)
	r := sendUntil(t, c, b, Advert{State: "FAULT", Priority: 100})
	if r.Advert.Node != "lb3" || r.Advert.State != "FAULT" {
		t.Fatalf("got %+v", r.Advert)
	}
}

func TestPathsValidated(t *testing.T) {
	for name, p := range map[string]Path{
		"other port":  {Bind: "127.0.0.2:9", Peer: "127.0.0.4:7946"},
		"bad peer":    {Bind: "127.0.0.2:7946", Peer: "nowhere"},
		"main peer":   {Bind: "127.0.0.2:7946", Peer: "127.0.0.3:7946"},
		"unspecified": {Bind: "0.0.0.0:7946", Peer: "127.0.0.4:7946"},
	} {
		_, err := New(Config{NodeName: "lb1", Bind: "127.0.0.1:7946", Peers: []string{"127.0.0.3:7946"},
			Paths: []Path{p}, Insecure: true})
		if err == nil {
			t.Errorf("%s: %+v accepted", name, p)
		}
	}
}
