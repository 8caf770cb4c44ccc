package witness

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// ICMP is the Pinger of the node: ICMP echo over a raw socket, which
// needs root (or CAP_NET_RAW). ID tells its answers from other pingers';
// each session also checks that an answer carries a sequence it sent
// lately and its random token (see echoBook), so a forged reply does not
// count.
type ICMP struct{ ID int }

// NewICMP returns an ICMP pinger identified by the process ID.
func NewICMP() ICMP { return ICMP{ID: os.Getpid() & 0xffff} }

// Open opens a raw ICMP (or ICMPv6) socket for addr.
func (p ICMP) Open(addr netip.Addr) (Conn, error) {
	c := &icmpConn{book: newEchoBook(p.ID), addr: addr.Unmap(), dst: &net.IPAddr{IP: addr.AsSlice()},
		proto: 1, echo: ipv4.ICMPTypeEcho, reply: ipv4.ICMPTypeEchoReply}
	network, listen := "ip4:icmp", "0.0.0.0"
	if addr.Is6() && !addr.Is4In6() {
		network, listen, c.proto = "ip6:ipv6-icmp", "::", 58
		c.echo, c.reply = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	pc, err := icmp.ListenPacket(network, listen)
	if err != nil {
		return nil, fmt.Errorf("open ICMP socket: %w", err)
	}
	c.pc = pc
	return c, nil
}

type icmpConn struct {
	pc          *icmp.PacketConn
	book        *echoBook
	addr        netip.Addr
	dst         *net.IPAddr
	proto       int
	echo, reply icmp.Type
	buf         [1500]byte
}

func (c *icmpConn) Echo(seq int) error {
	msg := icmp.Message{Type: c.echo, Body: c.book.request(seq)}
	b, err := msg.Marshal(nil)
	if err != nil {
		return fmt.Errorf("build echo: %w", err)
	}
	_, err = c.pc.WriteTo(b, c.dst)
	return err
}

func (c *icmpConn) Reply(deadline time.Time) (bool, error) {
	_ = c.pc.SetReadDeadline(deadline)
	k, from, err := c.pc.ReadFrom(c.buf[:])
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false, nil
		}
		return false, err
	}
	m, err := icmp.ParseMessage(c.proto, c.buf[:k])
	if err != nil || m.Type != c.reply {
		return false, nil
	}
	e, _ := m.Body.(*icmp.Echo)
	src, _ := netip.ParseAddr(from.String())
	return c.book.answers(e) && src.Unmap() == c.addr, nil
}

func (c *icmpConn) Close() error { return c.pc.Close() }
