package dataplane

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"sync/atomic"

	"github.com/tandem-lb/tandem/pkg/config"
)

// cookieLabel is the HKDF info of the persistence cookie's key, apart
// from the replication channel's labels, so the cookie key reveals
// nothing of the channel's.
const cookieLabel = "tandem http cookie v1 "

// CookieKeys derives the keys that sign a cluster's persistence cookie
// from the pair's cluster keys (primary first), by HKDF-SHA256 with the
// cluster's name in the info, as pkg/replicate derives its keys: both
// boxes derive the same keys, so each accepts the other's cookies
// without anything replicated, and a cookie signed with a key being
// rotated out stays valid while the key is accepted. An insecure pair
// (no key) gets a key derived from nothing: the cookies still name
// servers, but anyone can forge them.
func CookieKeys(clusterKeys [][]byte, cluster string) [][]byte {
	if len(clusterKeys) == 0 {
		clusterKeys = [][]byte{nil}
	}
	out := make([][]byte, 0, len(clusterKeys))
	for _, k := range clusterKeys {
		d, err := hkdf.Key(sha256.New, k, nil, cookieLabel+cluster, 32)
		if err != nil { // only for lengths HKDF cannot give; 32 it can
			panic(err)
		}
		out = append(out, d)
	}
	return out
}

// cookieJar makes and reads the persistence cookie. A cookie's value is
// the server's name and an HMAC-SHA256 of it, both base64url; it holds no
// time, so the value of a server is fixed for a key: the jar computes
// every server's value for every key once, and a lookup is a map read.
type cookieJar struct {
	p    config.Persistence
	tab  atomic.Pointer[cookieTable]
	list []*Server
}

type cookieTable struct {
	set   map[*Server]string // the Set-Cookie line, signed with the primary key
	valid map[string]*Server // every key's values
}

func newCookieJar(p config.Persistence, servers []*Server, keys [][]byte) *cookieJar {
	j := &cookieJar{p: p, list: servers}
	j.setKeys(keys)
	return j
}

// setKeys replaces the keys (a key rotation).
func (j *cookieJar) setKeys(keys [][]byte) {
	if len(keys) == 0 {
		keys = CookieKeys(nil, "")
	}
	t := &cookieTable{set: map[*Server]string{}, valid: map[string]*Server{}}
	for i, k := range keys {
		for _, s := range j.list {
			v := cookieValue(k, s.Name)
			if i == 0 {
				t.set[s] = j.line(v)
			}
			t.valid[v] = s
		}
	}
	j.tab.Store(t)
}

func cookieValue(key []byte, server string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(server))
	sum := m.Sum(nil)
	return base64.RawURLEncoding.EncodeToString([]byte(server)) + "." +
		base64.RawURLEncoding.EncodeToString(sum[:16])
}

// server returns the server the request's cookie names, if its signature
// is valid.
func (j *cookieJar) server(r *http.Request) *Server {
	t := j.tab.Load()
	for _, c := range r.CookiesNamed(j.p.Name) {
		if s := t.valid[c.Value]; s != nil {
			return s
		}
	}
	return nil
}

// cookie is the Set-Cookie value that names s.
func (j *cookieJar) cookie(s *Server) string { return j.tab.Load().set[s] }

// line is the Set-Cookie value of a cookie of value v.
func (j *cookieJar) line(v string) string {
	c := &http.Cookie{
		Name: j.p.Name, Value: v, Path: j.p.Path, Domain: j.p.Domain,
		Secure: j.p.Secure, HttpOnly: j.p.HTTPOnly == nil || *j.p.HTTPOnly,
	}
	if j.p.MaxAge > 0 {
		c.MaxAge = max(1, int(j.p.MaxAge.Seconds()))
	}
	switch j.p.SameSite {
	case "strict":
		c.SameSite = http.SameSiteStrictMode
	case "none":
		c.SameSite = http.SameSiteNoneMode
	default:
		c.SameSite = http.SameSiteLaxMode
	}
	return c.String()
}

// SetCookieKeys replaces the keys of the cluster's persistence cookie
// (see CookieKeys), for a rotation of the cluster keys.
func (c *HTTPCluster) SetCookieKeys(keys [][]byte) {
	if c.cookie != nil {
		c.cookie.setKeys(keys)
	}
}
