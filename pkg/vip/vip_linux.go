package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// newPlatform binds the kernel operations to the network namespace of the
// calling thread.
func newPlatform(iface string) (addrOps, announcer, error) {
	ns, err := netns.Get()
	if err != nil {
		return nil, nil, fmt.Errorf("vip: get netns: %w", err)
	}
	h, err := newHandleIn(ns)
	if err != nil {
		ns.Close()
		return nil, nil, fmt.Errorf("vip: netlink handle: %w", err)
	}
	ops := &netlinkOps{iface: iface, h: h}
	return ops, &rawAnnouncer{iface: iface, ns: ns, ops: ops}, nil
}

// netlinkOps manages addresses with rtnetlink. The link is looked up by
// name on every call, so a re-created interface is picked up.
type netlinkOps struct {
	iface string
	mu    sync.Mutex // the handle's sockets are not meant for concurrent use
	h     *netlink.Handle
}

func (o *netlinkOps) link() (netlink.Link, error) {
	l, err := o.h.LinkByName(o.iface)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", o.iface, err)
	}
	return l, nil
}

func (o *netlinkOps) List() ([]netip.Prefix, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	l, err := o.link()
	if err != nil {
		return nil, err
	}
	var addrs []netlink.Addr
	for range 3 { // a dump interrupted by a concurrent change is retried
		addrs, err = o.h.AddrList(l, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		bits, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), bits))
	}
	return out, nil
}

func toAddr(p netip.Prefix) *netlink.Addr {
	a := p.Addr()
	return &netlink.Addr{IPNet: &net.IPNet{
		IP:   a.AsSlice(),
		Mask: net.CIDRMask(p.Bits(), a.BitLen()),
	}}
}

func (o *netlinkOps) Add(p netip.Prefix) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	l, err := o.link()
	if err != nil {
		return err
	}
	a := toAddr(p)
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD // usable at once, no tentative phase
	}
	if err := o.h.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

func (o *netlinkOps) Del(p netip.Prefix) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	l, err := o.link()
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil // no interface, no address
		}
		return err
	}
	err = o.h.AddrDel(l, toAddr(p))
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// rawAnnouncer sends GARP through a packet socket (mdlayher/arp) and NAs
// through an ICMPv6 raw socket (mdlayher/ndp). Sockets are opened on first
// use, inside the Manager's namespace, and dropped after an error so the
// next announcement reopens them (the interface may have been re-created).
type rawAnnouncer struct {
	iface string
	ns    netns.NsHandle
	ops   *netlinkOps // for link look-ups; its handle is closed with us

	mu     sync.Mutex
	arp    *arp.Client
	arpMAC net.HardwareAddr // of the interface when arp was opened
	ndp    *ndp.Conn
	ndpMAC net.HardwareAddr
	ndpIdx int
}

func (r *rawAnnouncer) Announce(ip netip.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ip.Is4() {
		if r.arp == nil {
			if err := r.openARP(); err != nil {
				return err
			}
		}
		if err := sendGARP(r.arp, r.arpMAC, ip); err != nil {
			r.arp.Close()
			r.arp = nil
			return err
		}
		return nil
	}
	if r.ndp == nil {
		if err := r.openNDP(); err != nil {
			return err
		}
	}
	cm := &ipv6.ControlMessage{HopLimit: ndp.HopLimit, Src: ip.AsSlice(), IfIndex: r.ndpIdx}
	if err := r.ndp.WriteTo(unsolicitedNA(ip, r.ndpMAC), cm, allNodes); err != nil {
		r.ndp.Close()
		r.ndp = nil
		return fmt.Errorf("send neighbour advertisement: %w", err)
	}
	return nil
}

// lookup returns the interface as net.Interface, read through netlink so
// that it comes from the Manager's namespace. Name holds the index in decimal: Go
// resolves IPv6 zones by name in the calling thread's namespace, which may
// not be ours, while a numeric zone needs no lookup.
func (r *rawAnnouncer) lookup() (*net.Interface, error) {
	r.ops.mu.Lock()
	l, err := r.ops.link()
	r.ops.mu.Unlock()
	if err != nil {
		return nil, err
	}
	a := l.Attrs()
	if len(a.HardwareAddr) < 6 {
		return nil, fmt.Errorf("%s has no Ethernet address", r.iface)
	}
	return &net.Interface{
		Index:        a.Index,
		MTU:          a.MTU,
		Name:         strconv.Itoa(a.Index),
		HardwareAddr: a.HardwareAddr,
		Flags:        a.Flags,
	}, nil
}

// dropAll is a BPF program that accepts nothing: the ARP socket only
// writes, and should not queue every ARP packet on the segment.
var dropAll = func() []bpf.RawInstruction {
	raw, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	if err != nil {
		panic(err) // a constant program; cannot fail
	}
	return raw
}()

func (r *rawAnnouncer) openARP() error {
	ifi, err := r.lookup()
	if err != nil {
		return err
	}
	err = inNetns(r.ns, func() error {
		p, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, &packet.Config{Filter: dropAll})
		if err != nil {
			return err
		}
		// arp.New reads the interface's addresses by index, here in our
		// namespace; it wants an IPv4 one, which the VIP itself provides.
		c, err := arp.New(ifi, p)
		if err != nil {
			p.Close()
			return err
		}
		r.arp = c
		return nil
	})
	if err != nil {
		return fmt.Errorf("open ARP socket on %s: %w", r.iface, err)
	}
	r.arpMAC = ifi.HardwareAddr
	return nil
}

func (r *rawAnnouncer) openNDP() error {
	ifi, err := r.lookup()
	if err != nil {
		return err
	}
	err = inNetns(r.ns, func() error {
		c, _, err := ndp.Listen(ifi, ndp.Unspecified)
		if err != nil {
			return err
		}
		var f ipv6.ICMPFilter
		f.SetAll(true) // write-only: receive nothing
		if err := c.SetICMPFilter(&f); err != nil {
			c.Close()
			return err
		}
		r.ndp = c
		return nil
	})
	if err != nil {
		return fmt.Errorf("open ICMPv6 socket on %s: %w", r.iface, err)
	}
	r.ndpMAC = ifi.HardwareAddr
	r.ndpIdx = ifi.Index
	return nil
}

// Close closes the sockets and the netlink handle.
func (r *rawAnnouncer) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	if r.arp != nil {
		errs = append(errs, r.arp.Close())
		r.arp = nil
	}
	if r.ndp != nil {
		errs = append(errs, r.ndp.Close())
		r.ndp = nil
	}
	r.ops.mu.Lock()
	r.ops.h.Close()
	r.ops.mu.Unlock()
	errs = append(errs, r.ns.Close())
	return errors.Join(errs...)
}
