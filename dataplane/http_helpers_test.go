package dataplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// webBackend is an httptest server that answers every request with a
// JSON echo: its name, the request's path, Host and headers. It counts
// the connections it accepted.
type webBackend struct {
	name  string
	srv   *httptest.Server
	conns atomic.Int64
	addr  netip.AddrPort
}

// webEcho is what a webBackend answers.
type webEcho struct {
	Server string      `json:"server"`
	Path   string      `json:"path"`
	Host   string      `json:"host"`
	Header http.Header `json:"header"`
	Body   int         `json:"body"`
}

func startWeb(t testing.TB, name string) *webBackend {
	t.Helper()
	b := &webBackend{name: name}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(webEcho{Server: name, Path: r.URL.Path, Host: r.Host, Header: r.Header, Body: int(n)})
	}))
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	b.addr = netip.MustParseAddrPort(b.srv.Listener.Addr().String())
	return b
}

// httpClusterConfig is an http cluster on 127.0.0.1, any port, over the
// given backends, with the defaults a config file would get.
func httpClusterConfig(t testing.TB, servers ...config.Server) config.VirtualCluster {
	t.Helper()
	vc := config.VirtualCluster{Name: "www", VIP: "127.0.0.1", Port: 0, Protocol: "http", Algorithm: RoundRobin,
		Mode: "proxy", Servers: servers, HTTP: &config.HTTP{}}
	c := config.Config{Clusters: []config.VirtualCluster{vc}}
	c.ApplyDefaults()
	return c.Clusters[0]
}

// srvAt is a config server at addr.
func srvAt(name, addr string) config.Server {
	return config.Server{Name: name, Address: addr, Weight: 1}
}

// srv is a config server for a backend.
func srv(b *webBackend, pool string) config.Server {
	return config.Server{Name: b.name, Address: b.addr.String(), Weight: 1, Pool: pool}
}

// runHTTP builds, binds and serves the cluster (active) until the test
// ends, and returns it with its base URL.
func runHTTP(t testing.TB, vc config.VirtualCluster, opts HTTPOptions) (*HTTPCluster, string) {
	t.Helper()
	pool, err := PoolFor(vc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewHTTPCluster(vc, pool, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	c.SetActive(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		c.Drain(dctx)
	})
	scheme := "http"
	if vc.TLS != nil {
		scheme = "https"
	}
	return c, scheme + "://" + c.ListenAddr().String()
}

// get sends one request with client and decodes the echo; the status and
// the response are returned too.
func get(t testing.TB, client *http.Client, req *http.Request) (webEcho, *http.Response) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	var e webEcho
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("%s: body %q: %v", req.URL, body, err)
		}
	}
	return e, resp
}

func newReq(t testing.TB, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// writeCert writes a self-signed ECDSA P-256 certificate for names,
// valid until notAfter, and its key; it returns their paths and the
// certificate.
func writeCert(t testing.TB, notAfter time.Time, names ...string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile, cert
}

// tlsClient trusts the given certificates and sends name as SNI.
func tlsClient(name string, h2 bool, certs ...*x509.Certificate) *http.Client {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: name}, ForceAttemptHTTP2: h2}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// plainClient is an HTTP/1.1 client with keep-alive that never follows
// redirects.
func plainClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
