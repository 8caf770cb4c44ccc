package vip

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// capturePC is a net.PacketConn that keeps what is written to it, so the
// ARP client can be exercised without a raw socket.
type capturePC struct {
	mu     sync.Mutex
	frames [][]byte
	dsts   []net.Addr
}

func (c *capturePC) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frames = append(c.frames, bytes.Clone(b))
	c.dsts = append(c.dsts, addr)
	return len(b), nil
}

func (c *capturePC) ReadFrom([]byte) (int, net.Addr, error) { return 0, nil, net.ErrClosed }
func (c *capturePC) Close() error                           { return nil }
func (c *capturePC) LocalAddr() net.Addr                    { return nil }
func (c *capturePC) SetDeadline(time.Time) error            { return nil }
func (c *capturePC) SetReadDeadline(time.Time) error        { return nil }
func (c *capturePC) SetWriteDeadline(time.Time) error       { return nil }

// loopbackWithMAC returns the loopback interface dressed up with a MAC:
// arp.New only needs an interface that has an IPv4 address.
func loopbackWithMAC(t *testing.T, mac net.HardwareAddr) *net.Interface {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback == 0 {
			continue
		}
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				ifi.HardwareAddr = mac
				return &ifi
			}
		}
	}
	t.Skip("no loopback interface with an IPv4 address")
	return nil
}

func TestGARPPacketFormat(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x20, 0x30}
	vip := netip.MustParseAddr("198.18.200.100")
	pc := &capturePC{}
	c, err := arp.New(loopbackWithMAC(t, mac), pc)
	if err != nil {
		t.Fatal(err)
	}
	if err := sendGARP(c, mac, vip); err != nil {
		t.Fatal(err)
	}
	if len(pc.frames) != 2 {
		t.Fatalf("wrote %d frames, want a request and a reply", len(pc.frames))
	}
	wantOps := []arp.Operation{arp.OperationRequest, arp.OperationReply}
	for i, b := range pc.frames {
		var f ethernet.Frame
		if err := f.UnmarshalBinary(b); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(f.Destination, ethernet.Broadcast) || !bytes.Equal(f.Source, mac) || f.EtherType != ethernet.EtherTypeARP {
			t.Errorf("frame %d: dst %v src %v type %v; want broadcast from %v, ARP", i, f.Destination, f.Source, f.EtherType, mac)
		}
		if !bytes.Contains([]byte(pc.dsts[i].String()), []byte(ethernet.Broadcast.String())) {
			t.Errorf("frame %d written to %v, want broadcast", i, pc.dsts[i])
		}
		var p arp.Packet
		if err := p.UnmarshalBinary(f.Payload); err != nil {
			t.Fatalf("frame %d ARP: %v", i, err)
		}
		if p.Operation != wantOps[i] {
			t.Errorf("frame %d: operation %v, want %v", i, p.Operation, wantOps[i])
		}
		if p.SenderIP != vip || p.TargetIP != vip {
			t.Errorf("frame %d: sender %v target %v, want both %v", i, p.SenderIP, p.TargetIP, vip)
		}
		if !bytes.Equal(p.SenderHardwareAddr, mac) {
			t.Errorf("frame %d: sender MAC %v, want %v", i, p.SenderHardwareAddr, mac)
		}
	}
}

func TestUnsolicitedNAFormat(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x20, 0x30}
	vip := netip.MustParseAddr("2001:db8::100")
	b, err := ndp.MarshalMessage(unsolicitedNA(vip, mac))
	if err != nil {
		t.Fatal(err)
	}
	// ICMPv6 header (4), flags+reserved (4), target (16), option (8).
	if len(b) != 32 || b[0] != 136 {
		t.Fatalf("got %d bytes of type %d, want 32 bytes of NA (136)", len(b), b[0])
	}
	if b[4] != 0x20 {
		t.Errorf("flags %#x, want override only (0x20)", b[4])
	}
	if !bytes.Equal(b[8:24], vip.AsSlice()) {
		t.Errorf("target %x, want %v", b[8:24], vip)
	}
	if b[24] != 2 || b[25] != 1 || !bytes.Equal(b[26:32], mac) {
		t.Errorf("option %x, want target link-layer address %v", b[24:], mac)
	}
}
