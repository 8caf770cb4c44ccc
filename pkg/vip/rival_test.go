package vip

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

var (
	ownMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x11}
	rivalMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x12}
	client   = netip.MustParseAddr("198.18.0.2")
)

func arpFrame(t *testing.T, op arp.Operation, mac net.HardwareAddr, sender, target netip.Addr) []byte {
	t.Helper()
	p, err := arp.NewPacket(op, mac, sender, ethernet.Broadcast, target)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	f := ethernet.Frame{Destination: ethernet.Broadcast, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: pb}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRivalInspect(t *testing.T) {
	vip := v4.Addr()
	cases := []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"gratuitous request from another box", arpFrame(t, arp.OperationRequest, rivalMAC, vip, vip), true},
		{"gratuitous reply from another box", arpFrame(t, arp.OperationReply, rivalMAC, vip, vip), true},
		{"our own announcement", arpFrame(t, arp.OperationRequest, ownMAC, vip, vip), false},
		// A kernel whose daemon died answers requests for a VIP left on
		// its interface and may ask for clients from it, but never
		// announces: not a rival.
		{"a request from the VIP for a client", arpFrame(t, arp.OperationRequest, rivalMAC, vip, client), false},
		{"a reply from the VIP to a client", arpFrame(t, arp.OperationReply, rivalMAC, vip, client), false},
		{"another address announced", arpFrame(t, arp.OperationRequest, rivalMAC, client, client), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := NewRivalWatcher("eth0", []netip.Prefix{v4, v6})
			now := time.Now()
			s, ok := w.inspect(tc.frame, ownMAC, now)
			if ok != tc.want {
				t.Fatalf("sighting = %v, want %v", ok, tc.want)
			}
			if ok && (s.VIP != vip || s.MAC.String() != rivalMAC.String() || !s.At.Equal(now)) {
				t.Errorf("sighting %+v", s)
			}
			if st := w.Stats(); st.Read != 1 || st.Malformed != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestRivalInspectDropsMalformed: truncated, foreign and random frames are
// counted as malformed and never panic.
func TestRivalInspectDropsMalformed(t *testing.T) {
	w := NewRivalWatcher("eth0", []netip.Prefix{v4})
	good := arpFrame(t, arp.OperationRequest, rivalMAC, v4.Addr(), v4.Addr())
	bad := [][]byte{nil, good[:10], good[:20], append([]byte(nil), good[:14]...)}
	ipFrame := append([]byte(nil), good...)
	ipFrame[12], ipFrame[13] = 0x08, 0x00 // EtherType IPv4
	bad = append(bad, ipFrame)
	for _, b := range bad {
		if _, ok := w.inspect(b, ownMAC, time.Now()); ok {
			t.Errorf("%x taken for a sighting", b)
		}
	}
	if st := w.Stats(); st.Malformed != uint64(len(bad)) {
		t.Errorf("malformed = %d, want %d", st.Malformed, len(bad))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		b := make([]byte, r.IntN(80))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		w.inspect(b, ownMAC, time.Now())
	}
}

func TestSetVIPsChangesWatch(t *testing.T) {
	w := NewRivalWatcher("eth0", []netip.Prefix{v4})
	other := netip.MustParsePrefix("198.18.0.101/24")
	f := arpFrame(t, arp.OperationRequest, rivalMAC, other.Addr(), other.Addr())
	if _, ok := w.inspect(f, ownMAC, time.Now()); ok {
		t.Fatal("unwatched VIP reported")
	}
	w.SetVIPs([]netip.Prefix{v4, other})
	if _, ok := w.inspect(f, ownMAC, time.Now()); !ok {
		t.Fatal("watched VIP not reported")
	}
}

func TestAnnounceOnce(t *testing.T) {
	ops := newFakeOps()
	m, ann := newTest(t, GARP{Count: 1}, ops)
	if err := m.AnnounceOnce(context.Background()); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("before claim: %v, want ErrNotClaimed", err)
	}
	if err := m.Claim(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.AnnounceOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := ann.count(v4.Addr()); got != 2 {
		t.Errorf("announcements = %d, want 2 (claim + once)", got)
	}
}

// FuzzRivalInspect: any frame read off the wire is either a sighting of a
// watched VIP from another hardware address or ignored; never a panic.
func FuzzRivalInspect(f *testing.F) {
	vip := v4.Addr()
	for _, op := range []arp.Operation{arp.OperationRequest, arp.OperationReply} {
		p, _ := arp.NewPacket(op, rivalMAC, vip, ethernet.Broadcast, vip)
		pb, _ := p.MarshalBinary()
		fr := ethernet.Frame{Destination: ethernet.Broadcast, Source: rivalMAC, EtherType: ethernet.EtherTypeARP, Payload: pb}
		b, _ := fr.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, frame []byte) {
		w := NewRivalWatcher("eth0", []netip.Prefix{v4})
		s, ok := w.inspect(frame, ownMAC, time.Time{})
		if ok && (s.VIP != vip || s.MAC.String() == ownMAC.String()) {
			t.Fatalf("bad sighting %+v", s)
		}
		if st := w.Stats(); st.Read != 1 {
			t.Fatalf("read = %d", st.Read)
		}
	})
}
