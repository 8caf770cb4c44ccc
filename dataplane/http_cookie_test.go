package dataplane

import (
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// cookieCluster is an http cluster over backends with cookie persistence.
func cookieCluster(t *testing.T, keys [][]byte, backends ...*webBackend) config.VirtualCluster {
	t.Helper()
	var servers []config.Server
	for _, b := range backends {
		servers = append(servers, srv(b, ""))
	}
	vc := httpClusterConfig(t, servers...)
	vc.Persistence = &config.Persistence{Mode: config.PersistenceCookie, Name: "LB", Path: "/", SameSite: "strict",
		MaxAge: time.Hour, Secure: true}
	c := config.Config{Clusters: []config.VirtualCluster{vc}}
	c.ApplyDefaults()
	return c.Clusters[0]
}

// withCookie is a GET carrying the cookie value v (if any).
func withCookie(t *testing.T, url, v string) *http.Request {
	req := newReq(t, "GET", url, nil)
	if v != "" {
		req.AddCookie(&http.Cookie{Name: "LB", Value: v})
	}
	return req
}

// setCookie returns the LB cookie a response sets, or "".
func setCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == "LB" {
			return c
		}
	}
	return nil
}

// TestHTTPCookiePersistence: the first response sets a signed cookie
// naming its server, with the configured attributes; requests with it
// keep that server without a new cookie; the peer box (another cluster
// with the same cluster key) honours it; a forged or foreign-key cookie
// is ignored; a cookie naming a drained or down server picks another.
func TestHTTPCookiePersistence(t *testing.T) {
	a, b := startWeb(t, "a"), startWeb(t, "b")
	keys := CookieKeys([][]byte{[]byte("0123456789abcdef0123456789abcdef")}, "www")
	vc := cookieCluster(t, keys, a, b)
	c, url := runHTTP(t, vc, HTTPOptions{CookieKeys: keys})
	_, peerURL := runHTTP(t, vc, HTTPOptions{CookieKeys: keys})
	client := plainClient()

	e, resp := get(t, client, withCookie(t, url, ""))
	ck := setCookie(resp)
	if ck == nil {
		t.Fatal("no cookie set")
	}
	raw := resp.Header.Get("Set-Cookie")
	for _, attr := range []string{"Path=/", "Max-Age=3600", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(raw, attr) {
			t.Errorf("Set-Cookie %q lacks %s", raw, attr)
		}
	}
	first := e.Server
	for i := range 6 {
		target := url
		if i%2 == 1 {
			target = peerURL // the other box
		}
		e, resp := get(t, client, withCookie(t, target, ck.Value))
		if e.Server != first || setCookie(resp) != nil {
			t.Errorf("request %d with the cookie: server %q (want %q), new cookie %v", i, e.Server, first, setCookie(resp))
		}
	}
	other := CookieKeys([][]byte{[]byte("another key, another pair......!")}, "www")
	for name, v := range map[string]string{
		"forged":      strings.Replace(ck.Value, ".", "x.", 1),
		"foreign key": cookieValue(other[0], first),
	} {
		seen := map[string]bool{}
		for range 4 {
			e, resp := get(t, client, withCookie(t, url, v))
			seen[e.Server] = true
			if setCookie(resp) == nil {
				t.Errorf("%s cookie: no new cookie set", name)
			}
		}
		if len(seen) != 2 {
			t.Errorf("%s cookie was honoured: servers %v", name, seen)
		}
	}
	pool := c.pool
	s := pool.Server(first)
	for _, down := range []func(){func() { s.SetAdmin(Draining) }, func() { s.SetAdmin(Enabled); s.SetHealthy(false) }} {
		down()
		pool.Refresh()
		e, resp := get(t, client, withCookie(t, url, ck.Value))
		if e.Server == first || setCookie(resp) == nil {
			t.Errorf("cookie for a server out of rotation: went to %q, new cookie %v", e.Server, setCookie(resp))
		}
	}
}

// TestHTTPCookieFallsBackToSourceIP: a client that sends no cookie stays
// on its server by its address.
func TestHTTPCookieFallsBackToSourceIP(t *testing.T) {
	a, b := startWeb(t, "a"), startWeb(t, "b")
	keys := CookieKeys(nil, "www")
	st := &ipSticky{m: map[netip.Addr]string{}}
	_, url := runHTTP(t, cookieCluster(t, keys, a, b), HTTPOptions{CookieKeys: keys, Sticky: st})
	seen := map[string]int{}
	for range 6 {
		e, _ := get(t, plainClient(), withCookie(t, url, ""))
		seen[e.Server]++
	}
	if len(seen) != 1 {
		t.Errorf("cookieless client spread over %v; want one server by source IP", seen)
	}
}

// ipSticky is a StickyTable in a map.
type ipSticky struct {
	mu sync.Mutex
	m  map[netip.Addr]string
}

func (s *ipSticky) Lookup(a netip.Addr) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[a]
	return v, ok
}

func (s *ipSticky) Store(a netip.Addr, v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[a] = v
}

// TestCookieKeys: the derivation is the same on both boxes, differs per
// cluster and per cluster key, and a rotated-out key's cookies stay
// valid while it is accepted.
func TestCookieKeys(t *testing.T) {
	k1, k2 := []byte("0123456789abcdef0123456789abcdef"), []byte("fedcba9876543210fedcba9876543210")
	if string(CookieKeys([][]byte{k1}, "www")[0]) != string(CookieKeys([][]byte{k1}, "www")[0]) {
		t.Error("derivation is not deterministic")
	}
	if string(CookieKeys([][]byte{k1}, "www")[0]) == string(CookieKeys([][]byte{k1}, "api")[0]) ||
		string(CookieKeys([][]byte{k1}, "www")[0]) == string(CookieKeys([][]byte{k2}, "www")[0]) {
		t.Error("keys of other clusters or cluster keys collide")
	}
	s := NewServer(0, "web1", netip.MustParseAddrPort("127.0.0.1:80"), 1)
	jar := newCookieJar(config.Persistence{Name: "LB", Path: "/"}, []*Server{s}, CookieKeys([][]byte{k1}, "www"))
	old := cookieValue(CookieKeys([][]byte{k1}, "www")[0], "web1")
	jar.setKeys(CookieKeys([][]byte{k2, k1}, "www"))
	req := withCookie(t, "http://x/", old)
	if jar.server(req) != s {
		t.Error("a cookie of the accepted old key is refused")
	}
	if !strings.Contains(jar.cookie(s), cookieValue(CookieKeys([][]byte{k2}, "www")[0], "web1")) {
		t.Error("new cookies are not signed with the new primary key")
	}
}
