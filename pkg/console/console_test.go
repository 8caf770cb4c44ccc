package console

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tandem-lb/tandem/pkg/api"
)

// fakeNode is a Source and an Actor.
type fakeNode struct {
	mu      sync.Mutex
	st      api.Status
	evs     []api.Event
	actions []string
	refuse  error
}

func (f *fakeNode) Status() api.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeNode) Events() []api.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.Event(nil), f.evs...)
}

func (f *fakeNode) SetServerAdmin(user, cluster, server, state string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cluster != "web" || server != "be1" {
		return fmt.Errorf("cluster %s has no server %q: %w", cluster, server, api.ErrNotFound)
	}
	f.actions = append(f.actions, user+" "+cluster+"/"+server+" "+state)
	return nil
}

func (f *fakeNode) Switchover(user string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse != nil {
		return f.refuse
	}
	f.actions = append(f.actions, user+" switchover")
	return nil
}

func (f *fakeNode) setState(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st.State = s
}

func newFake() *fakeNode {
	return &fakeNode{st: api.Status{Node: "lb1", State: "MASTER", Peers: []api.Peer{{Name: "lb2", State: "BACKUP", Alive: true}},
		Clusters: []api.Cluster{{Name: "web", Servers: []api.Server{{Name: "be1", Healthy: true, Admin: "enabled"}}}}}}
}

// testConsole serves a console with users ann (admin) and vic (viewer).
func testConsole(t *testing.T) (*fakeNode, *httptest.Server) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users")
	for _, u := range [][2]string{{"ann", RoleAdmin}, {"vic", RoleViewer}} {
		if err := setPassword(path, u[0], u[0]+"-password", u[1], bcrypt.MinCost); err != nil {
			t.Fatal(err)
		}
	}
	f := newFake()
	c, err := New(Options{UsersFile: path, Source: f, Actor: f})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	ctx := t.Context()
	go c.live.run(ctx)
	return f, srv
}

type browser struct {
	t    *testing.T
	c    *http.Client
	base string
	csrf string
}

func newBrowser(t *testing.T, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: base, c: &http.Client{Jar: jar}}
}

var hiddenCSRF = regexp.MustCompile(`name="csrf" (?:value|content)="([^"]+)"`)

// login fetches the login form and posts it; it returns the final page.
func (b *browser) login(user, password string) (*http.Response, string) {
	b.t.Helper()
	r, err := b.c.Get(b.base + "/login")
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	m := hiddenCSRF.FindStringSubmatch(string(body))
	if m == nil {
		b.t.Fatalf("no csrf field in the login page:\n%s", body)
	}
	r, err = b.c.PostForm(b.base+"/login", url.Values{"csrf": {m[1]}, "user": {user}, "password": {password}})
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ = io.ReadAll(r.Body)
	r.Body.Close()
	if m := regexp.MustCompile(`name="csrf" content="([^"]+)"`).FindStringSubmatch(string(body)); m != nil {
		b.csrf = m[1]
	}
	return r, string(body)
}

func (b *browser) post(path, csrf string) (int, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.base+path, nil)
	if csrf != "" {
		req.Header.Set(csrfHeader, csrf)
	}
	r, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer r.Body.Close()
	body, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(body)
}

func TestLoginSessionCookie(t *testing.T) {
	_, srv := testConsole(t)
	b := newBrowser(t, srv.URL)
	r, body := b.login("ann", "wrong-password")
	if r.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Wrong user name or password") {
		t.Fatalf("wrong password: %d %q", r.StatusCode, body)
	}
	r, body = b.login("ann", "ann-password")
	if r.StatusCode != http.StatusOK || !strings.Contains(body, "Tandem <span id=\"node\">lb1</span>") || b.csrf == "" {
		t.Fatalf("login: %d\n%s", r.StatusCode, body)
	}
	// The cookie as the browser got it.
	u, _ := url.Parse(srv.URL)
	cks := b.c.Jar.Cookies(u)
	if len(cks) != 1 || cks[0].Name != cookieName {
		t.Fatalf("cookies after login: %v", cks)
	}
	// Set-Cookie attributes, from a fresh login.
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	lp, _ := c.Get(srv.URL + "/login")
	lb, _ := io.ReadAll(lp.Body)
	lp.Body.Close()
	tok := hiddenCSRF.FindStringSubmatch(string(lb))[1]
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/login",
		strings.NewReader(url.Values{"csrf": {tok}, "user": {"vic"}, "password": {"vic-password"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, ck := range lp.Cookies() {
		req.AddCookie(ck)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == cookieName {
			session = ck
		}
	}
	if resp.StatusCode != http.StatusSeeOther || session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Secure {
		t.Fatalf("login answer %d, session cookie %+v: want 303, HttpOnly, SameSite=Strict, not Secure over HTTP", resp.StatusCode, session)
	}
	// Logged out: the page sends back to the login form.
	if code, _ := b.post("/logout", b.csrf); code != http.StatusOK {
		t.Fatalf("logout: %d", code)
	}
	r2, err := b.c.Get(srv.URL + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status after logout: %d, want 401", r2.StatusCode)
	}
}

func TestLoginWithoutFormTokenRefused(t *testing.T) {
	_, srv := testConsole(t)
	r, err := http.PostForm(srv.URL+"/login", url.Values{"user": {"ann"}, "password": {"ann-password"}})
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("login without the form's token: %d, want 403", r.StatusCode)
	}
}

func TestActionsByRoleAndCSRF(t *testing.T) {
	f, srv := testConsole(t)
	ann, vic := newBrowser(t, srv.URL), newBrowser(t, srv.URL)
	ann.login("ann", "ann-password")
	vic.login("vic", "vic-password")
	path := "/api/clusters/web/servers/be1/drain"
	if code, body := ann.post(path, ""); code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
		t.Errorf("admin without CSRF token: %d %s, want 403", code, body)
	}
	if code, _ := ann.post(path, vic.csrf); code != http.StatusForbidden {
		t.Errorf("admin with another session's token: %d, want 403", code)
	}
	if code, body := vic.post(path, vic.csrf); code != http.StatusForbidden || !strings.Contains(body, "viewer") {
		t.Errorf("viewer: %d %s, want 403 naming the role", code, body)
	}
	if code, body := ann.post(path, ann.csrf); code != http.StatusOK {
		t.Errorf("admin: %d %s", code, body)
	}
	if code, _ := ann.post("/api/clusters/web/servers/nope/drain", ann.csrf); code != http.StatusNotFound {
		t.Errorf("unknown server: %d, want 404", code)
	}
	f.refuse = fmt.Errorf("peer lb2 is FAULT, not BACKUP")
	if code, body := ann.post("/api/switchover", ann.csrf); code != http.StatusConflict || !strings.Contains(body, "peer lb2 is FAULT") {
		t.Errorf("refused switchover: %d %s, want 409 with the reason", code, body)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if want := []string{"ann web/be1 draining"}; fmt.Sprint(f.actions) != fmt.Sprint(want) {
		t.Errorf("actions = %v, want %v", f.actions, want)
	}
}

func TestLoginsRateLimited(t *testing.T) {
	_, srv := testConsole(t)
	b := newBrowser(t, srv.URL)
	for i := range loginBurst {
		if r, _ := b.login("ann", "nope-nope"); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want 401", i+1, r.StatusCode)
		}
	}
	r, body := b.login("ann", "ann-password")
	if r.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "Too many login attempts") {
		t.Fatalf("attempt after the burst: %d, want 429", r.StatusCode)
	}
}

func TestLimiterRefills(t *testing.T) {
	var l limiter
	now := time.Unix(0, 0)
	for range loginBurst {
		if ok, _ := l.allow("a", now); !ok {
			t.Fatal("burst refused")
		}
	}
	if ok, wait := l.allow("a", now); ok || wait != loginEvery {
		t.Fatalf("empty bucket: ok=%v wait=%v", ok, wait)
	}
	if ok, _ := l.allow("b", now); !ok {
		t.Fatal("another address refused")
	}
	if ok, _ := l.allow("a", now.Add(loginEvery)); !ok {
		t.Fatal("not refilled after loginEvery")
	}
}

func TestLiveFeedPushesChanges(t *testing.T) {
	f, srv := testConsole(t)
	b := newBrowser(t, srv.URL)
	b.login("vic", "vic-password")
	r, err := b.c.Get(srv.URL + "/api/live")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if ct := r.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(nil, 1<<20)
	next := func() liveMsg {
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var m liveMsg
				if err := json.Unmarshal([]byte(data), &m); err != nil {
					t.Fatal(err)
				}
				return m
			}
		}
		t.Fatalf("feed ended: %v", sc.Err())
		return liveMsg{}
	}
	if m := next(); m.Status.State != "MASTER" || m.Status.Node != "lb1" {
		t.Fatalf("snapshot on connect: %+v", m.Status)
	}
	f.setState("FAULT")
	start := time.Now()
	for {
		m := next()
		if m.Status.State == "FAULT" {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("the change did not arrive")
		}
	}
}

func TestUsersFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte("# console users\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := setPassword(path, "ann", "first-password", RoleViewer, bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if err := setPassword(path, "bob", "bob-password", RoleAdmin, bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if err := setPassword(path, "ann", "second-password", RoleAdmin, bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	users, err := ParseUsers(data)
	if err != nil || len(users) != 2 || users["ann"].Role != RoleAdmin || !strings.HasPrefix(string(data), "# console users\n") {
		t.Fatalf("users %v, err %v, file:\n%s", users, err, data)
	}
	uf := &userFile{path: path}
	if _, ok := uf.check("ann", "first-password"); ok {
		t.Error("the old password still works")
	}
	if u, ok := uf.check("ann", "second-password"); !ok || u.Role != RoleAdmin {
		t.Error("the new password does not work")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	for _, bad := range []string{"x:notahash:admin", "x:$2a$10$abc:root", "only-two:fields"} {
		if _, err := ParseUsers([]byte(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: err %v, want a line-1 error", bad, err)
		}
	}
	if err := SetPassword(path, "c", "short", RoleAdmin); err == nil {
		t.Error("a 5-character password was accepted")
	}
}
