package dataplane

import (
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/tandem-lb/tandem/pkg/config"
)

// router sends a request to one of the cluster's pools: the first rule
// that matches names it, else the default pool. Each named pool is a Pool
// of its own over the same Servers (so health and admin states are
// shared) with a balancer of its own; the cluster's pool refreshes them.
type router struct {
	rules []route
	def   *Pool
}

// route is one http.rules entry, parsed.
type route struct {
	host     string // lower case; "" matches any
	wildcard bool   // host was "*.example.com": host holds ".example.com"
	prefix   string
	hname    string // canonical header name; "" matches any
	hvalue   string
	hany     bool // the header need only be present
	pool     *Pool
}

// newRouter builds the pools and rules of vc over pool, whose servers are
// in vc.Servers' order. With no named pool, the default pool is pool
// itself.
func newRouter(vc config.VirtualCluster, pool *Pool) (*router, error) {
	byName := map[string][]*Server{}
	named := false
	for i, s := range pool.Servers() {
		name := ""
		if i < len(vc.Servers) {
			name = vc.Servers[i].Pool
		}
		named = named || name != ""
		byName[name] = append(byName[name], s)
	}
	r := &router{def: pool}
	if !named {
		return r, nil
	}
	pools := map[string]*Pool{}
	for name, servers := range byName {
		b, err := NewBalancer(vc.Algorithm)
		if err != nil {
			return nil, err
		}
		pools[name] = NewPool(servers, b)
	}
	r.def = pools[""]
	if r.def == nil {
		return nil, fmt.Errorf("the default pool (servers without pool) is empty")
	}
	all := make([]*Pool, 0, len(pools))
	for _, p := range pools {
		all = append(all, p)
	}
	pool.OnRefresh(func() {
		for _, p := range all {
			p.Refresh()
		}
	})
	if vc.HTTP == nil {
		return r, nil
	}
	for i, rc := range vc.HTTP.Rules {
		p := pools[rc.Pool]
		if p == nil {
			return nil, fmt.Errorf("http.rules[%d]: no server has pool %q", i, rc.Pool)
		}
		rt := route{host: strings.ToLower(rc.Host), prefix: rc.PathPrefix, pool: p}
		if h, ok := strings.CutPrefix(rt.host, "*"); ok {
			rt.host, rt.wildcard = h, true
		}
		if rc.Header != "" {
			name, value, ok := strings.Cut(rc.Header, ":")
			rt.hname = http.CanonicalHeaderKey(strings.TrimSpace(name))
			rt.hvalue, rt.hany = strings.TrimSpace(value), !ok
		}
		r.rules = append(r.rules, rt)
	}
	return r, nil
}

// pick returns the pool for req: the first matching rule's, else the
// default.
func (r *router) pick(req *http.Request) *Pool {
	if len(r.rules) == 0 {
		return r.def
	}
	host := req.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for i := range r.rules {
		if rt := &r.rules[i]; rt.matches(req, host) {
			return rt.pool
		}
	}
	return r.def
}

func (rt *route) matches(req *http.Request, host string) bool {
	switch {
	case rt.host == "":
	case rt.wildcard:
		if !strings.HasSuffix(host, rt.host) || len(host) == len(rt.host) {
			return false
		}
	case host != rt.host:
		return false
	}
	if rt.prefix != "" && !strings.HasPrefix(req.URL.Path, rt.prefix) {
		return false
	}
	if rt.hname != "" {
		vs, ok := req.Header[rt.hname]
		if !ok {
			return false
		}
		if !rt.hany {
			found := false
			for _, v := range vs {
				if v == rt.hvalue {
					found = true
					break
				}
			}
			return found
		}
	}
	return true
}
