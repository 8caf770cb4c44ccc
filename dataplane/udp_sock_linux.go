//go:build linux

package dataplane

import (
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The UDP loops' batches: recvmmsg reads up to udpBatch client datagrams
// per call and sendmmsg sends up to udpBatch answers, each slot big
// enough for any datagram (65,535 bytes + 1, so nothing is ever cut).
const (
	udpBatch    = 32
	udpSlot     = udpMaxDatagram + 1
	udpCtrlSize = 64 // room for one IP_PKTINFO or IPV6_PKTINFO message
	// udpListenRcvBuf absorbs bursts of queries on the VIP socket (kernel
	// memory, used only while datagrams wait).
	udpListenRcvBuf = 4 << 20
)

// fdBudget is the most upstream sockets a cluster may hold by default:
// three quarters of the descriptor limit, the rest left for listeners,
// TCP clusters and the node itself.
func fdBudget() int64 {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil || r.Cur == unix.RLIM_INFINITY {
		return DefaultMaxFlows
	}
	return int64(r.Cur) * 3 / 4
}

// udpIs6 reports whether a is a true IPv6 address (not IPv4-mapped).
func udpIs6(a netip.Addr) bool { return a.Is6() && !a.Is4In6() }

// listenUDPSocket opens the nonblocking VIP socket of one loop: bound
// with IP_FREEBIND (the VIP may not be here yet), receiving the address
// each datagram was sent to (IP_PKTINFO / IPV6_RECVPKTINFO), with
// SO_REUSEADDR, SO_REUSEPORT when loops share the port, and a large
// receive buffer. An IPv6 socket is IPv6-only.
func listenUDPSocket(addr netip.AddrPort, reuseport bool) (int, error) {
	v6 := udpIs6(addr.Addr())
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	type opt struct {
		level, name int
		what        string
	}
	opts := []opt{{unix.SOL_SOCKET, unix.SO_REUSEADDR, "SO_REUSEADDR"}}
	if v6 {
		opts = append(opts, opt{unix.SOL_IPV6, unix.IPV6_FREEBIND, "IPV6_FREEBIND"},
			opt{unix.SOL_IPV6, unix.IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO"},
			opt{unix.SOL_IPV6, unix.IPV6_V6ONLY, "IPV6_V6ONLY"})
	} else {
		opts = append(opts, opt{unix.SOL_IP, unix.IP_FREEBIND, "IP_FREEBIND"},
			opt{unix.SOL_IP, unix.IP_PKTINFO, "IP_PKTINFO"})
	}
	if reuseport {
		opts = append(opts, opt{unix.SOL_SOCKET, unix.SO_REUSEPORT, "SO_REUSEPORT"})
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o.level, o.name, 1); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("set %s: %w", o.what, err)
		}
	}
	// Best effort: FORCE needs CAP_NET_ADMIN, plain SO_RCVBUF is capped
	// by net.core.rmem_max.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpListenRcvBuf) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, udpListenRcvBuf)
	}
	if err := unix.Bind(fd, udpSockaddr(addr)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %s: %w", addr, err)
	}
	return fd, nil
}

// localSources keeps the source addresses this box has: one list of
// source_addresses can name both boxes' addresses, and each uses its own.
// None of them here is an error. An address is the box's when one of its
// interfaces has it, or when it lies in a loopback interface's prefix
// (all of 127.0.0.0/8 is local). A trial bind would not tell: boxes with
// ip_nonlocal_bind bind any address.
func (c *UDPCluster) localSources() error {
	mine, err := localAddrs()
	if err != nil {
		return fmt.Errorf("source_addresses: %w", err)
	}
	var local, other []netip.Addr
	for _, a := range c.sources {
		if mine(a) {
			local = append(local, a)
		} else {
			other = append(other, a)
		}
	}
	if len(local) == 0 {
		return fmt.Errorf("source_addresses: none of %v is an address of this box", c.sources)
	}
	if len(other) > 0 {
		c.log.Info("udp: source addresses of the other box are left out", "using", local, "not_here", other)
	}
	c.sources = local
	return nil
}

// localAddrs reports which addresses belong to this box (its network
// namespace), as localSources means it.
func localAddrs() (func(netip.Addr) bool, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	exact := map[netip.Addr]bool{}
	var loop []netip.Prefix
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			exact[ip] = true
			if ifc.Flags&net.FlagLoopback != 0 {
				ones, _ := ipn.Mask.Size()
				loop = append(loop, netip.PrefixFrom(ip, ones).Masked())
			}
		}
	}
	return func(a netip.Addr) bool {
		if exact[a] {
			return true
		}
		for _, p := range loop {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}, nil
}

// udpBoundAddr is the address fd is bound to.
func udpBoundAddr(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockname: %w", err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("getsockname: unexpected %T", sa)
}

// udpSockaddr converts a to the unix package's form.
func udpSockaddr(a netip.AddrPort) unix.Sockaddr {
	if ip := a.Addr(); udpIs6(ip) {
		return &unix.SockaddrInet6{Port: int(a.Port()), Addr: ip.As16()}
	}
	return &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().Unmap().As4()}
}

// udpDial opens a nonblocking UDP socket connected to sa: the kernel
// picks its local port (on src when src is valid) and lets only the
// server's datagrams in. Without src the port is unique among all of the
// namespace's addresses, so ip_local_port_range bounds such sockets; with
// a source address it is unique on that address only.
func udpDial(sa unix.Sockaddr, src netip.Addr) (int, error) {
	family := unix.AF_INET
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if src.IsValid() {
		if err := unix.Bind(fd, udpSockaddr(netip.AddrPortFrom(src, 0))); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("bind %s: %w", src, err)
		}
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect: %w", err)
	}
	return fd, nil
}

// udpBatchMem is the memory of one recvmmsg or sendmmsg call: headers, names,
// control messages and data slots. It points into itself, so it lives on
// the heap for its loop's life; the slots are an anonymous mapping, so
// only the pages datagrams actually touch become resident.
type udpBatchMem struct {
	hdrs  [udpBatch]unix.Mmsghdr
	iovs  [udpBatch]unix.Iovec
	names [udpBatch]unix.RawSockaddrInet6 // room for either family
	ctrl  [udpBatch][udpCtrlSize]byte
	flows [udpBatch]*uflow // sendmmsg: the flow of each answer
	mem   []byte
}

func newUDPBatch() (*udpBatchMem, error) {
	mem, err := unix.Mmap(-1, 0, udpBatch*udpSlot, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("mmap batch buffers: %w", err)
	}
	b := &udpBatchMem{mem: mem}
	for i := range b.hdrs {
		b.iovs[i].Base = &mem[i*udpSlot]
		b.iovs[i].SetLen(udpSlot)
		h := &b.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
		h.Control = &b.ctrl[i][0]
	}
	return b, nil
}

// slot is the data of slot i, n bytes long.
func (b *udpBatchMem) slot(i, n int) []byte { return b.mem[i*udpSlot : i*udpSlot+n] }

// free unmaps the slots; b must not be used again.
func (b *udpBatchMem) free() {
	if b.mem != nil {
		unix.Munmap(b.mem)
		b.mem = nil
	}
}

// armRecv resets the value-result fields of the first n headers.
func (b *udpBatchMem) armRecv(n int) {
	for i := range n {
		h := &b.hdrs[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.SetControllen(udpCtrlSize)
		h.Flags = 0
		b.hdrs[i].Len = 0
	}
}

// The datagram calls below are raw system calls: the sockets are
// nonblocking, so they never wait, and skipping the scheduler's
// enter/exit bookkeeping saves a little on every datagram.

// udpRecvmmsg reads up to len(hdrs) datagrams from fd without blocking.
func udpRecvmmsg(fd int, hdrs []unix.Mmsghdr) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])),
		uintptr(len(hdrs)), unix.MSG_TRUNC, 0, 0)
	return int(n), e
}

// udpSendmmsg sends the datagrams of hdrs on fd; it returns how many went.
func udpSendmmsg(fd int, hdrs []unix.Mmsghdr) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])),
		uintptr(len(hdrs)), 0, 0, 0)
	return int(n), e
}

// udpRecvTrunc reads one datagram from a connected socket into p and
// returns its full length, which exceeds len(p) if it did not fit.
func udpRecvTrunc(fd int, p []byte) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])),
		uintptr(len(p)), unix.MSG_TRUNC, 0, 0)
	return int(n), e
}

// udpSend writes p on a connected socket.
func udpSend(fd int, p []byte) unix.Errno {
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))),
		uintptr(len(p)), 0, 0, 0)
	return e
}

// udpNameAddr decodes the sockaddr a recvmmsg stored in name.
func udpNameAddr(name *unix.RawSockaddrInet6, v6 bool) netip.AddrPort {
	if v6 {
		p := (*[2]byte)(unsafe.Pointer(&name.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(name.Addr), uint16(p[0])<<8|uint16(p[1]))
	}
	sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(name))
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
}

// udpSetName stores a as the destination of a sendmmsg header; it returns
// the sockaddr's length.
func udpSetName(name *unix.RawSockaddrInet6, a netip.AddrPort, v6 bool) uint32 {
	port := a.Port()
	if v6 {
		*name = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.Addr().As16()}
		p := (*[2]byte)(unsafe.Pointer(&name.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return unix.SizeofSockaddrInet6
	}
	sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(name))
	*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Addr().As4()}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return unix.SizeofSockaddrInet4
}

// udpPktinfo finds the destination address (and interface) of a received
// datagram in its control messages.
func udpPktinfo(ctrl []byte, v6 bool) (netip.Addr, uint32, bool) {
	hdr := unix.CmsgLen(0)
	for len(ctrl) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
		l := int(h.Len)
		if l < hdr || l > len(ctrl) {
			break
		}
		data := ctrl[hdr:l]
		switch {
		case !v6 && h.Level == unix.SOL_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			return netip.AddrFrom4(pi.Addr), uint32(pi.Ifindex), true
		case v6 && h.Level == unix.SOL_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			return netip.AddrFrom16(pi.Addr), pi.Ifindex, true
		}
		ctrl = ctrl[min(unix.CmsgSpace(l-hdr), len(ctrl)):]
	}
	return netip.Addr{}, 0, false
}

// udpSetPktinfo writes the control message that makes an answer leave from
// src into ctrl and returns its length. IPv4 leaves the interface to the
// routing table; IPv6 names it only for a link-local source, which needs it.
func udpSetPktinfo(ctrl *[udpCtrlSize]byte, src netip.Addr, ifindex uint32, v6 bool) int {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
	data := unsafe.Pointer(&ctrl[unix.CmsgLen(0)])
	if v6 {
		h.Level, h.Type = unix.SOL_IPV6, unix.IPV6_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
		pi := (*unix.Inet6Pktinfo)(data)
		pi.Addr = src.As16()
		pi.Ifindex = 0
		if src.IsLinkLocalUnicast() {
			pi.Ifindex = ifindex
		}
		return unix.CmsgSpace(unix.SizeofInet6Pktinfo)
	}
	h.Level, h.Type = unix.SOL_IP, unix.IP_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
	pi := (*unix.Inet4Pktinfo)(data)
	*pi = unix.Inet4Pktinfo{Spec_dst: src.As4()}
	return unix.CmsgSpace(unix.SizeofInet4Pktinfo)
}
