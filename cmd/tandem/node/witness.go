package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// witness pings failover.witness (such as the gateway) so that a box cut
// off from the network does not claim the VIPs: without a recent answer
// the node holds itself in BACKUP. It pings twice per advert interval and
// counts the witness lost after two intervals of silence, so a box cut
// off together with its peer's adverts is held before its master-down
// timer (three intervals plus the skew) runs out.
type witness struct {
	id        int
	seq       atomic.Uint32
	lastReply atomic.Int64 // unix ns of the last echo reply from the target
	target    atomic.Pointer[netip.Addr]
	sent      atomic.Uint64
	answered  atomic.Uint64
}

func newWitness() *witness {
	return &witness{id: os.Getpid() & 0xffff}
}

// lost reports whether the configured witness has not answered within
// window; false when no witness is configured.
func (w *witness) lost(target string, now time.Time, window time.Duration) bool {
	if target == "" {
		return false
	}
	t := w.target.Load()
	if a, err := netip.ParseAddr(target); t == nil || err != nil || *t != a {
		return true // not pinged yet
	}
	last := w.lastReply.Load()
	return last == 0 || now.Sub(time.Unix(0, last)) > window
}

// run pings the witness named by target() every period until ctx ends.
// The target is read on each ping, so a reload changes it.
func (n *Node) runWitness(ctx context.Context, w *witness, target func() string, period func() time.Duration) error {
	for ctx.Err() == nil {
		t := target()
		if t == "" {
			if !sleepCtx(ctx, time.Second) {
				return nil
			}
			continue
		}
		err := n.pingLoop(ctx, w, t, target, period)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			n.log.Warn("witness: ping failed, retrying", "witness", t, "err", err)
			sleepCtx(ctx, time.Second)
		}
	}
	return nil
}

// pingLoop pings addr until ctx ends or target() changes.
func (n *Node) pingLoop(ctx context.Context, w *witness, addr string, target func() string, period func() time.Duration) error {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return fmt.Errorf("witness %q: %w", addr, err)
	}
	network, listen, proto := "ip4:icmp", "0.0.0.0", 1
	var echo, reply icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if ip.Is6() && !ip.Is4In6() {
		network, listen, proto = "ip6:ipv6-icmp", "::", 58
		echo, reply = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	c, err := icmp.ListenPacket(network, listen)
	if err != nil {
		return fmt.Errorf("open ICMP socket: %w", err)
	}
	defer c.Close()
	w.lastReply.Store(0)
	w.target.Store(&ip)
	book := newEchoBook(w.id)

	done := make(chan struct{})
	defer func() { <-done }()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for rctx.Err() == nil {
			_ = c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
			k, from, err := c.ReadFrom(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return
			}
			m, err := icmp.ParseMessage(proto, buf[:k])
			if err != nil || m.Type != reply {
				continue
			}
			e, _ := m.Body.(*icmp.Echo)
			src, _ := netip.ParseAddr(from.String())
			if !book.answers(e) || src.Unmap() != ip.Unmap() {
				continue
			}
			w.answered.Add(1)
			w.lastReply.Store(time.Now().UnixNano())
		}
	}()

	dst := &net.IPAddr{IP: ip.AsSlice()}
	for ctx.Err() == nil && target() == addr {
		// (A reload that changes the witness ends this loop; run starts
		// another for the new address.)
		msg := icmp.Message{Type: echo, Body: book.request(int(w.seq.Add(1) & 0xffff))}
		b, err := msg.Marshal(nil)
		if err != nil {
			return fmt.Errorf("build echo: %w", err)
		}
		if _, err := c.WriteTo(b, dst); err == nil {
			w.sent.Add(1)
		}
		// A send error (no route while the cable is out) is a miss,
		// like a lost answer.
		if !sleepCtx(ctx, period()) {
			return nil
		}
	}
	return nil
}

// sleepCtx sleeps d or until ctx ends; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
