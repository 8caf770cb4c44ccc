package replicate

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Pre-authentication limits. Before its handshake succeeds a connection
// is a stranger's: anyone who can reach the port can open one. Without a
// bound per source, a few idle connections would hold every handshake
// slot and lock the real peer out (NOT SYNCED, switchover refused,
// sticky clients lost at the next failover). So the peer's address (known
// from the config) has slots of its own that strangers never take, every
// other source gets one handshake at a time, all strangers together a few,
// and a stranger's handshake must finish quickly (on a LAN it takes
// milliseconds).
const (
	// peerHandshakes is how many handshakes the peer's address may have
	// in progress: a reconnect while its previous attempt times out.
	peerHandshakes = 2
	// strangerHandshakes bounds the handshakes in progress from all other
	// addresses together.
	strangerHandshakes = 4
	// perSourceHandshakes bounds a single other address.
	perSourceHandshakes = 1
	// strangerTimeout bounds a stranger's whole handshake.
	strangerTimeout = time.Second
)

// preauth admits connections to the handshake phase.
type preauth struct {
	peer netip.Addr // the configured peer's address; invalid if unknown

	mu        sync.Mutex
	peerN     int
	strangers map[netip.Addr]int
	total     int // strangers' handshakes in progress
}

// newPreauth reserves slots for the address of peer ("ip:port").
func newPreauth(peer string) *preauth {
	p := &preauth{strangers: map[netip.Addr]int{}}
	if ap, err := netip.ParseAddrPort(peer); err == nil {
		p.peer = ap.Addr().Unmap()
	}
	return p
}

// admit decides whether a connection from remote may start a handshake.
// When it may, release must be called once the handshake is over, and
// timeout is how long the handshake may take (limit for the peer, less
// for a stranger).
func (p *preauth) admit(remote net.Addr, limit time.Duration) (release func(), timeout time.Duration, ok bool) {
	src := addrOf(remote)
	p.mu.Lock()
	defer p.mu.Unlock()
	if src.IsValid() && src == p.peer {
		if p.peerN >= peerHandshakes {
			return nil, 0, false
		}
		p.peerN++
		return p.releaser(func() { p.peerN-- }), limit, true
	}
	if p.total >= strangerHandshakes || p.strangers[src] >= perSourceHandshakes {
		return nil, 0, false
	}
	p.total++
	p.strangers[src]++
	return p.releaser(func() {
		p.total--
		if p.strangers[src]--; p.strangers[src] <= 0 {
			delete(p.strangers, src)
		}
	}), min(limit, strangerTimeout), true
}

// releaser runs undo under p.mu, once.
func (p *preauth) releaser(undo func()) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			undo()
		})
	}
}

// addrOf is the IP of a TCP address, invalid for anything else.
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}
