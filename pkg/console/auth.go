package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"sync"
	"time"
)

// Session lifetimes: a session ends after sessionIdle without a request
// or sessionMax after the login, whichever comes first.
const (
	sessionIdle = time.Hour
	sessionMax  = 12 * time.Hour
	maxSessions = 1024
	cookieName  = "tandem_session"
	loginCookie = "tandem_login"
	csrfHeader  = "X-CSRF-Token"
)

// session is one logged-in browser.
type session struct {
	user    string
	csrf    string
	created time.Time
	seen    time.Time
}

// sessions maps the cookie's random token to its session. In memory
// only: a restarted node asks everyone to log in again.
type sessions struct {
	mu sync.Mutex
	m  map[string]*session
}

func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for user and returns its token.
func (s *sessions) create(user string, now time.Time) (string, *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*session{}
	}
	s.expire(now)
	if len(s.m) >= maxSessions {
		// Full: the least recently seen goes.
		var oldest string
		for tok, ss := range s.m {
			if oldest == "" || ss.seen.Before(s.m[oldest].seen) {
				oldest = tok
			}
		}
		delete(s.m, oldest)
	}
	tok := newToken()
	ss := &session{user: user, csrf: newToken(), created: now, seen: now}
	s.m[tok] = ss
	return tok, ss
}

// get returns the live session of token and marks it seen.
func (s *sessions) get(token string, now time.Time) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.m[token]
	if !ok {
		return session{}, false
	}
	if now.Sub(ss.seen) > sessionIdle || now.Sub(ss.created) > sessionMax {
		delete(s.m, token)
		return session{}, false
	}
	ss.seen = now
	return *ss, true
}

func (s *sessions) remove(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, token)
}

func (s *sessions) expire(now time.Time) {
	for tok, ss := range s.m {
		if now.Sub(ss.seen) > sessionIdle || now.Sub(ss.created) > sessionMax {
			delete(s.m, tok)
		}
	}
}

// limiter rate-limits login attempts per source address: a bucket of
// loginBurst attempts refilled by one every loginEvery. A pure value
// over the time it is given.
type limiter struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

const (
	loginBurst   = 5
	loginEvery   = 12 * time.Second
	maxLimiterIP = 4096
)

// allow takes one attempt from addr's bucket; false (and how long to
// wait) when it is empty.
func (l *limiter) allow(addr string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buckets == nil {
		l.buckets = map[string]*bucket{}
	}
	b, ok := l.buckets[addr]
	if !ok {
		if len(l.buckets) >= maxLimiterIP {
			l.prune(now)
		}
		b = &bucket{tokens: loginBurst, at: now}
		l.buckets[addr] = b
	}
	b.tokens = min(loginBurst, b.tokens+float64(now.Sub(b.at))/float64(loginEvery))
	b.at = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) * float64(loginEvery))
	}
	b.tokens--
	return true, 0
}

// prune forgets the buckets that are full again; if none is, all of
// them (a flood of addresses must not grow the map without bound).
func (l *limiter) prune(now time.Time) {
	for a, b := range l.buckets {
		if b.tokens+float64(now.Sub(b.at))/float64(loginEvery) >= loginBurst {
			delete(l.buckets, a)
		}
	}
	if len(l.buckets) >= maxLimiterIP {
		clear(l.buckets)
	}
}

// sourceAddr is the address a request came from, without its port.
func sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// sameToken compares two tokens in constant time; empty never matches.
func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// sameOrigin refuses a request that the browser says came from another
// site: Sec-Fetch-Site other than same-origin, or an Origin header that
// names another site. A client that sends neither (curl) is left to the
// CSRF token.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	return o == scheme+r.Host
}
