package dataplane

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// Pool is a cluster's servers and its balancer. The accept path picks from
// a snapshot of the servers available now: an immutable slice behind an
// atomic pointer, rebuilt by Refresh whenever a health verdict or an admin
// state changes, so Pick takes no lock.
type Pool struct {
	servers []*Server
	byName  map[string]*Server
	b       Balancer

	mu    sync.Mutex // serialises Refresh, so an older snapshot never wins
	avail atomic.Pointer[[]*Server]
	// changed, if set, is called after every Refresh (a nat cluster
	// rewrites its kernel rules).
	changed atomic.Pointer[func()]
}

// OnRefresh sets fn to be called after every Refresh, outside the pool's
// lock; nil removes it.
func (p *Pool) OnRefresh(fn func()) {
	if fn == nil {
		p.changed.Store(nil)
		return
	}
	p.changed.Store(&fn)
}

// NewPool returns a pool of servers, in config order, balanced by b, with
// its snapshot taken. Each server's Index must be unique in the pool,
// since balancers key their state by it; b must not be shared with
// another pool.
func NewPool(servers []*Server, b Balancer) *Pool {
	p := &Pool{
		servers: servers,
		byName:  make(map[string]*Server, len(servers)),
		b:       b,
	}
	for _, s := range servers {
		p.byName[s.Name] = s
	}
	p.Refresh()
	return p
}

// Servers returns every server of the pool, available or not, in config
// order. The slice is shared: do not modify it.
func (p *Pool) Servers() []*Server { return p.servers }

// Server returns the server called name, or nil.
func (p *Pool) Server(name string) *Server { return p.byName[name] }

// Refresh rebuilds the snapshot of available servers. Call it after any
// SetHealthy that reported a change and after any SetAdmin: until then
// Pick keeps using the previous snapshot.
func (p *Pool) Refresh() {
	p.refresh()
	if fn := p.changed.Load(); fn != nil {
		(*fn)()
	}
}

func (p *Pool) refresh() {
	p.mu.Lock()
	defer p.mu.Unlock()
	avail := make([]*Server, 0, len(p.servers))
	for _, s := range p.servers {
		if s.Available() {
			avail = append(avail, s)
		}
	}
	p.avail.Store(&avail)
}

// Available is the number of servers in the current snapshot.
func (p *Pool) Available() int { return len(*p.avail.Load()) }

// Snapshot returns the servers available now, in config order. The slice
// is shared: do not modify it.
func (p *Pool) Snapshot() []*Server { return *p.avail.Load() }

// Pick chooses a server for a connection from client, or returns nil when
// no server is available. exclude, if not nil, is left out: the server a
// connect just failed on, so a retry goes elsewhere (under source_hash, to
// the client's runner-up). With exclude nil, Pick neither locks nor
// allocates; the retry path copies the snapshot.
func (p *Pool) Pick(client netip.Addr, exclude *Server) *Server {
	cands := *p.avail.Load()
	if exclude != nil {
		cands = withoutServer(cands, exclude)
	}
	if len(cands) == 0 {
		return nil
	}
	return p.b.Pick(client, cands)
}

// withoutServer returns servers less s, sharing servers when s is not in it.
func withoutServer(servers []*Server, s *Server) []*Server {
	for i, x := range servers {
		if x == s {
			out := make([]*Server, 0, len(servers)-1)
			out = append(out, servers[:i]...)
			return append(out, servers[i+1:]...)
		}
	}
	return servers
}
