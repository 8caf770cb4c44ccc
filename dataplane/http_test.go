package dataplane

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// TestHTTPProxyBalancesOverKeepAlive: requests alternate between the two
// servers (round robin), the servers see the client's Host, and the
// proxy reuses its connections to them.
func TestHTTPProxyBalancesOverKeepAlive(t *testing.T) {
	a, b := startWeb(t, "a"), startWeb(t, "b")
	c, url := runHTTP(t, httpClusterConfig(t, srv(a, ""), srv(b, "")), HTTPOptions{})
	client := plainClient()
	seen := map[string]int{}
	for i := range 20 {
		req := newReq(t, "GET", url+"/x", nil)
		req.Host = "www.example.test"
		e, resp := get(t, client, req)
		if resp.StatusCode != 200 || e.Host != "www.example.test" || e.Path != "/x" {
			t.Fatalf("request %d: status %d, echo %+v", i, resp.StatusCode, e)
		}
		seen[e.Server]++
	}
	if seen["a"] != 10 || seen["b"] != 10 {
		t.Errorf("round robin spread %v, want 10 each", seen)
	}
	if n := a.conns.Load() + b.conns.Load(); n > 2 {
		t.Errorf("servers saw %d connections for 20 sequential requests; want the keep-alive pool (2)", n)
	}
	st := c.Stats()
	if st.Requests != 20 || st.Status["2xx"] != 20 || st.ServerRequests["a"].Requests != 10 {
		t.Errorf("stats: %+v", st.RequestStats)
	}
	if st.Servers[0].ConnectTime == 0 || st.Servers[1].ConnectTime == 0 {
		t.Errorf("connect times %v, %v: want both measured (fastest_response)", st.Servers[0].ConnectTime, st.Servers[1].ConnectTime)
	}
}

// TestHTTPForwardedHeaders: an untrusted client's X-Forwarded-For and
// Forwarded are replaced by its own address; a trusted proxy's are
// appended to.
func TestHTTPForwardedHeaders(t *testing.T) {
	a := startWeb(t, "a")
	for _, tt := range []struct {
		name           string
		trusted        []string
		wantXFF        string
		wantFwd, proto string
	}{
		{"untrusted", nil, "127.0.0.1", "for=127.0.0.1;proto=http;host=", "http"},
		{"trusted", []string{"127.0.0.0/8"}, "203.0.113.9, 127.0.0.1", "for=203.0.113.9, for=127.0.0.1;proto=http;host=", "https"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			vc := httpClusterConfig(t, srv(a, ""))
			vc.HTTP.TrustedProxies = tt.trusted
			_, url := runHTTP(t, vc, HTTPOptions{})
			req := newReq(t, "GET", url, nil)
			req.Header.Set("X-Forwarded-For", "203.0.113.9")
			req.Header.Set("X-Forwarded-Proto", "https")
			req.Header.Set("Forwarded", "for=203.0.113.9")
			e, _ := get(t, plainClient(), req)
			if got := e.Header.Get("X-Forwarded-For"); got != tt.wantXFF {
				t.Errorf("X-Forwarded-For %q, want %q", got, tt.wantXFF)
			}
			if got := e.Header.Get("Forwarded"); !strings.HasPrefix(got, tt.wantFwd) {
				t.Errorf("Forwarded %q, want prefix %q", got, tt.wantFwd)
			}
			if got := e.Header.Get("X-Forwarded-Proto"); got != tt.proto {
				t.Errorf("X-Forwarded-Proto %q, want %q", got, tt.proto)
			}
		})
	}
}

// TestHTTPRules: host, path prefix and header rules send requests to
// their pools, first match first; others go to the default pool.
func TestHTTPRules(t *testing.T) {
	def, api, beta, img := startWeb(t, "def"), startWeb(t, "api"), startWeb(t, "beta"), startWeb(t, "img")
	vc := httpClusterConfig(t, srv(def, ""), srv(api, "api"), srv(beta, "beta"), srv(img, "img"))
	vc.HTTP.Rules = []config.HTTPRule{
		{Header: "X-Beta: 1", Pool: "beta"},
		{Host: "api.example.test", Pool: "api"},
		{Host: "*.img.example.test", PathPrefix: "/i/", Pool: "img"},
	}
	_, url := runHTTP(t, vc, HTTPOptions{})
	for _, tt := range []struct {
		host, path, header, want string
	}{
		{"www.example.test", "/", "", "def"},
		{"api.example.test:8080", "/v1", "", "api"},
		{"api.example.test", "/v1", "X-Beta: 1", "beta"},
		{"cdn.img.example.test", "/i/a.png", "", "img"},
		{"cdn.img.example.test", "/other", "", "def"},
		{"img.example.test", "/i/a.png", "", "def"},
	} {
		req := newReq(t, "GET", url+tt.path, nil)
		req.Host = tt.host
		if name, value, ok := strings.Cut(tt.header, ": "); ok {
			req.Header.Set(name, value)
		}
		if e, _ := get(t, plainClient(), req); e.Server != tt.want {
			t.Errorf("%s%s %q went to %q, want %q", tt.host, tt.path, tt.header, e.Server, tt.want)
		}
	}
}

// TestHTTPRetryOnConnectFailure: an idempotent request whose server
// refuses the connect is sent to the other server; a POST with a body
// is not, and gets 502.
func TestHTTPRetryOnConnectFailure(t *testing.T) {
	a := startWeb(t, "a")
	dead := config.Server{Name: "dead", Address: deadAddr(t).String(), Weight: 1}
	c, url := runHTTP(t, httpClusterConfig(t, dead, srv(a, "")), HTTPOptions{})
	client := plainClient()
	for i := range 4 {
		if e, resp := get(t, client, newReq(t, "GET", url, nil)); resp.StatusCode != 200 || e.Server != "a" {
			t.Errorf("GET %d: status %d from %q, want 200 from a", i, resp.StatusCode, e.Server)
		}
	}
	if st := c.Stats(); st.Retries == 0 || st.Servers[0].Failures != st.Retries {
		t.Errorf("GETs: %d retries, dead's failures %d: want every failure retried", st.Retries, st.Servers[0].Failures)
	}
	posts502 := 0
	for range 4 {
		if _, resp := get(t, client, newReq(t, "POST", url, strings.NewReader("x=1"))); resp.StatusCode == 502 {
			posts502++
		}
	}
	st := c.Stats()
	if posts502 == 0 || uint64(posts502) != st.BadGateway || st.Servers[0].Failures != st.Retries+uint64(posts502) {
		t.Errorf("POSTs: %d got 502, bad gateway %d, retries %d, dead's failures %d: want POSTs never retried",
			posts502, st.BadGateway, st.Retries, st.Servers[0].Failures)
	}
}

// TestHTTPStandbyRefuses: a cluster that does not serve (BACKUP) resets
// new connections and counts them.
func TestHTTPStandbyRefuses(t *testing.T) {
	a := startWeb(t, "a")
	c, url := runHTTP(t, httpClusterConfig(t, srv(a, "")), HTTPOptions{})
	c.SetActive(false)
	if _, err := plainClient().Get(url); err == nil {
		t.Fatal("a standby cluster answered")
	}
	if n := c.Stats().Refused["standby"]; n != 1 {
		t.Errorf("refused standby %d, want 1", n)
	}
	c.SetActive(true)
	if _, resp := get(t, plainClient(), newReq(t, "GET", url, nil)); resp.StatusCode != 200 {
		t.Errorf("active again: status %d", resp.StatusCode)
	}
}

// TestHTTPAccessLog writes a combined line and a JSON line.
func TestHTTPAccessLog(t *testing.T) {
	a := startWeb(t, "a")
	for _, format := range []string{config.AccessLogCombined, config.AccessLogJSON} {
		var buf lockedBuffer
		vc := httpClusterConfig(t, srv(a, ""))
		vc.HTTP.AccessLogFormat = format
		_, url := runHTTP(t, vc, HTTPOptions{AccessLog: &buf})
		req := newReq(t, "GET", url+"/p?q=1", nil)
		req.Header.Set("User-Agent", "tester")
		get(t, plainClient(), req)
		line := buf.waitLine(t)
		if format == config.AccessLogCombined {
			want := `"GET /p?q=1 HTTP/1.1" 200 `
			if !strings.HasPrefix(line, "127.0.0.1 - - [") || !strings.Contains(line, want) || !strings.HasSuffix(line, "\"-\" \"tester\"\n") {
				t.Errorf("combined line %q", line)
			}
			continue
		}
		var e logEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Status != 200 || e.Server != "a" || e.URI != "/p?q=1" || e.Agent != "tester" {
			t.Errorf("json line %q: %+v %v", line, e, err)
		}
	}
}

// TestHTTPUpgradePassthrough: an Upgrade request gets the server's 101
// and then a raw byte stream both ways.
func TestHTTPUpgradePassthrough(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "no upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo: " + line)
		brw.Flush()
	}))
	t.Cleanup(up.Close)
	c, url := runHTTP(t, httpClusterConfig(t, config.Server{Name: "up", Address: up.Listener.Addr().String(), Weight: 1}), HTTPOptions{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade response %v %v", resp, err)
	}
	io.WriteString(conn, "hello\n")
	if line, _ := br.ReadString('\n'); line != "echo: hello\n" {
		t.Errorf("through the upgraded connection: %q", line)
	}
	conn.Close()
	// The request is counted when the upgraded connection has ended.
	for deadline := time.Now().Add(5 * time.Second); c.Stats().Requests == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if st := c.Stats(); st.Status["1xx"] != 1 {
		t.Errorf("status classes %v, want one 1xx", st.Status)
	}
}

// lockedBuffer is a bytes.Buffer safe for the proxy's writes and the
// test's reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitLine waits (5s at most) for a line in b: the proxy logs after it
// has answered.
func (b *lockedBuffer) waitLine(t testing.TB) string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if s := b.String(); strings.HasSuffix(s, "\n") {
			return s
		}
	}
	t.Fatal("no access log line")
	return ""
}

// TestHTTPPassive: passive health hears of failed connects, 5xx answers
// and unanswered requests, and of the success that follows a failure.
func TestHTTPPassive(t *testing.T) {
	code := 500
	var mu sync.Mutex
	up := startWebFuncB(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(code)
	})
	dead := config.Server{Name: "dead", Address: deadAddr(t).String(), Weight: 1}
	c, url := runHTTP(t, httpClusterConfig(t, srvAt("up", up), dead), HTTPOptions{})
	var heard []string
	var hmu sync.Mutex
	c.pool.SetPassive(func(server string, ok bool, what string) {
		hmu.Lock()
		defer hmu.Unlock()
		heard = append(heard, fmt.Sprintf("%s %v %s", server, ok, what))
	})
	client := plainClient()
	do := func(req *http.Request) {
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	do(newReq(t, "GET", url, nil))                       // up: 500
	do(newReq(t, "POST", url, strings.NewReader("x=1"))) // dead: refused, not retried
	mu.Lock()
	code = 200
	mu.Unlock()
	do(newReq(t, "GET", url, nil)) // up: 200 after its failure
	hmu.Lock()
	got := strings.Join(heard, "; ")
	hmu.Unlock()
	if want := "up false 5xx answers; dead false connects refused; up true "; got != want {
		t.Errorf("passive heard %q, want %q", got, want)
	}
}
