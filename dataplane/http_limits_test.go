package dataplane

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// rawHTTP sends s on a new connection to the cluster and returns the
// first response and whether the proxy closed the connection after it.
func rawHTTP(t *testing.T, url, s string) (*http.Response, bool) {
	t.Helper()
	var conn net.Conn
	var err error
	if addr, ok := strings.CutPrefix(url, "https://"); ok {
		conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	} else {
		conn, err = net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, s); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_, err = br.ReadByte()
	return resp, err == io.EOF
}

// TestHTTPLimits: headers over max_header_bytes get 431, bodies over
// max_body_bytes 413 (announced or chunked), a malformed request 400,
// within limits 200; each is counted.
func TestHTTPLimits(t *testing.T) {
	a := startWeb(t, "a")
	vc := httpClusterConfig(t, srv(a, ""))
	vc.HTTP.MaxHeaderBytes, vc.HTTP.MaxBodyBytes = 1024, 1000
	c, url := runHTTP(t, vc, HTTPOptions{})
	big := strings.Repeat("x", 8000)
	for _, tt := range []struct {
		name, req string
		want      int
	}{
		{"small", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 200},
		{"header too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n", 431},
		{"body announced too large", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + strings.Repeat("y", 2000), 413},
		{"malformed", "GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400},
		{"chunked body too large", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" + strings.Repeat("y", 2000) + "\r\n0\r\n\r\n", 413},
	} {
		if resp, _ := rawHTTP(t, url, tt.req); resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
	if st := c.Stats(); st.TooLarge != 2 || st.HeaderTooLarge != 1 || st.Malformed != 1 || st.Requests != 3 {
		t.Errorf("counted too large %d (want 2), header too large %d (want 1), malformed %d (want 1), requests %d (want 3)",
			st.TooLarge, st.HeaderTooLarge, st.Malformed, st.Requests)
	}
}

// TestHTTPSmuggling: a request with both Content-Length and
// Transfer-Encoding gets 400, its connection is closed, and no server
// sees it, over HTTP and HTTPS; net/http alone would take it (dropping
// Content-Length). A good request on the connection before it is served.
func TestHTTPSmuggling(t *testing.T) {
	a := startWeb(t, "a")
	cert, key, _ := writeCert(t, time.Now().Add(time.Hour), "www.example.test")
	for _, secure := range []bool{false, true} {
		vc := httpClusterConfig(t, srv(a, ""))
		if secure {
			vc.TLS = &config.TLS{CertFile: cert, KeyFile: key, MinVersion: "1.2"}
		}
		c, url := runHTTP(t, vc, HTTPOptions{})
		before := a.conns.Load()
		smuggle := "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"
		resp, closed := rawHTTP(t, url, smuggle)
		if resp.StatusCode != 400 || !closed {
			t.Errorf("%s smuggling attempt: status %d, closed %v; want 400 and closed", url, resp.StatusCode, closed)
		}
		if n := a.conns.Load() - before; n != 0 {
			t.Errorf("%s: the server saw %d connections", url, n)
		}
		if n := c.Stats().Smuggling; n != 1 {
			t.Errorf("%s: smuggling counted %d, want 1", url, n)
		}
		if resp, _ := rawHTTP(t, url, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); resp.StatusCode != 200 {
			t.Errorf("%s: a good request got %d", url, resp.StatusCode)
		}
	}
}

// TestHTTPSlowHeaders: a client that dribbles its headers a byte at a
// time is cut at the header timeout.
func TestHTTPSlowHeaders(t *testing.T) {
	a := startWeb(t, "a")
	vc := httpClusterConfig(t, srv(a, ""))
	vc.HTTP.HeaderTimeout = 300 * time.Millisecond
	_, url := runHTTP(t, vc, HTTPOptions{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		var b [1]byte
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		conn.Read(b[:])
		closed <- time.Since(start)
	}()
	msg := "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("z", 200)
	for i := 0; i < len(msg); i++ {
		select {
		case d := <-closed:
			if d < 300*time.Millisecond || d > 5*time.Second {
				t.Errorf("cut after %s; want at the 300ms header timeout", d)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		conn.Write([]byte{msg[i]})
	}
	t.Fatal("the slow client was never cut")
}

// TestHTTPDrain: Drain lets a request in flight finish, closes idle
// keep-alive connections, and returns when nothing is left.
func TestHTTPDrain(t *testing.T) {
	release := make(chan struct{})
	slow := startWebFunc(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	})
	vc := httpClusterConfig(t, config.Server{Name: "slow", Address: slow, Weight: 1})
	pool, _ := PoolFor(vc)
	c, err := NewHTTPCluster(vc, pool, HTTPOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	c.SetActive(true)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx) }()
	url := "http://" + c.ListenAddr().String()
	idle := plainClient()
	if resp, err := idle.Get(url + "/"); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	got := make(chan int, 1)
	go func() {
		resp, err := plainClient().Get(url + "/slow")
		if err != nil {
			got <- 0
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	for c.Stats().Servers[0].Active == 0 { // the slow request reached the server
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	drained := make(chan struct{})
	go func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		c.Drain(dctx)
		close(drained)
	}()
	select {
	case <-drained:
		t.Fatal("Drain returned with a request in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if code := <-got; code != 200 {
		t.Errorf("the request in flight got %d, want 200", code)
	}
	<-drained
	if n := c.Stats().Active; n != 0 {
		t.Errorf("%d client connections left after Drain (the idle keep-alive one included)", n)
	}
}

// startWebFunc serves h on 127.0.0.1 until the test ends and returns
// its address.
func startWebFunc(t *testing.T, h http.HandlerFunc) string { return startWebFuncB(t, h) }

func startWebFuncB(t testing.TB, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: h}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// TestFraming follows pipelined requests and flags only the one with
// both headers, whatever the bodies before it look like.
func TestFraming(t *testing.T) {
	get := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	lookalike := "Content-Length: 1\r\nTransfer-Encoding: x\r\n\r\n" // a body that looks like headers
	withBody := "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(lookalike)) + "\r\n\r\n" + lookalike
	chunked := "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
		strconv.FormatInt(int64(len(lookalike)), 16) + ";ext=1\r\n" + lookalike + "\r\n0\r\nTrailer: 1\r\n\r\n"
	smuggle := "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n"
	for _, tt := range []struct {
		name   string
		stream string
		want   bool
	}{
		{"plain requests", "\r\n" + get + withBody + chunked + get, false},
		{"smuggling after bodies", get + withBody + chunked + smuggle, true},
		{"smuggling alone", smuggle, true},
		{"after an upgrade anything goes", "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n" + smuggle, false},
	} {
		for _, step := range []int{1, 7, 1 << 20} { // split the stream in reads of every size
			f := &framing{}
			got := false
			for s := tt.stream; len(s) > 0; {
				n := min(step, len(s))
				got = f.feed([]byte(s[:n])) || got
				s = s[n:]
			}
			if got != tt.want {
				t.Errorf("%s, reads of %d: flagged %v, want %v", tt.name, step, got, tt.want)
			}
		}
	}
}

// TestHTTPSSilentClientCut: a client that opens a connection to an
// HTTPS cluster and never finishes its handshake is cut at the header
// timeout.
func TestHTTPSSilentClientCut(t *testing.T) {
	a := startWeb(t, "a")
	cert, key, _ := writeCert(t, time.Now().Add(time.Hour), "www.example.test")
	vc := httpClusterConfig(t, srv(a, ""))
	vc.TLS = &config.TLS{CertFile: cert, KeyFile: key, MinVersion: "1.2"}
	vc.HTTP.HeaderTimeout = 300 * time.Millisecond
	c, url := runHTTP(t, vc, HTTPOptions{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "\x16\x03\x01") // the start of a ClientHello, and no more
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	if d := time.Since(start); err == nil || d > 5*time.Second || d < 250*time.Millisecond {
		t.Errorf("silent client: read %v after %s; want the connection closed at the 300ms header timeout", err, d)
	}
	for deadline := time.Now().Add(5 * time.Second); c.Stats().Active != 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := c.Stats().Active; n != 0 {
		t.Errorf("%d client connections counted after the cut", n)
	}
}
