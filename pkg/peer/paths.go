package peer

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Path is one more way to reach the peer than Config.Bind/Config.Peers,
// such as a dedicated cable between the boxes. Adverts go out on every
// path; memberlist's membership stays on the main one.
type Path struct {
	// Bind is this node's ip:port on the path; the port must be Bind's.
	Bind string
	// Peer is the other node's ip:port on the path.
	Peer string
}

// pathTransport is memberlist's NetTransport listening on the main and
// every path address, whose packets to a path peer leave from a socket
// bound to that path's own address. NetTransport writes every packet
// from its first listener, so without this a packet on the dedicated
// cable would carry the main address as its source and be dropped by a
// strict reverse-path filter on the peer.
type pathTransport struct {
	*memberlist.NetTransport
	// out maps a path peer's ip:port to the socket bound on our side.
	out map[string]*net.UDPConn

	once sync.Once
}

func newPathTransport(bind netip.AddrPort, paths []Path, logger *log.Logger) (*pathTransport, error) {
	addrs := []string{bind.Addr().String()}
	for _, p := range paths {
		addrs = append(addrs, netip.MustParseAddrPort(p.Bind).Addr().String())
	}
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: addrs,
		BindPort:  int(bind.Port()),
		Logger:    logger,
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %v port %d: %w", addrs, bind.Port(), err)
	}
	pt := &pathTransport{NetTransport: nt, out: map[string]*net.UDPConn{}}
	for _, p := range paths {
		local := netip.MustParseAddrPort(p.Bind).Addr()
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
		if err != nil {
			_ = pt.Shutdown()
			return nil, fmt.Errorf("heartbeat path %s: %w", p.Bind, err)
		}
		pt.out[netip.MustParseAddrPort(p.Peer).String()] = c
	}
	return pt, nil
}

// WriteToAddress sends a packet, from the path's own address when addr
// is a path peer.
func (t *pathTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	if c, ok := t.out[addr.Addr]; ok {
		ap, err := netip.ParseAddrPort(addr.Addr)
		if err != nil {
			return time.Time{}, fmt.Errorf("heartbeat path %s: %w", addr.Addr, err)
		}
		_, err = c.WriteToUDPAddrPort(b, ap)
		return time.Now(), err
	}
	return t.NetTransport.WriteToAddress(b, addr)
}

// WriteTo is WriteToAddress for callers that only have an address.
func (t *pathTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// Shutdown closes the path sockets and memberlist's listeners.
func (t *pathTransport) Shutdown() error {
	var errs []error
	t.once.Do(func() {
		for _, c := range t.out {
			errs = append(errs, c.Close())
		}
		errs = append(errs, t.NetTransport.Shutdown())
	})
	return errors.Join(errs...)
}
