package dataplane

import (
	"crypto/tls"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// TestHTTPSByServerName: the client's SNI picks the certificate, HTTP/2
// is negotiated by ALPN (HTTP/1.1 when the client offers only that), the
// server is told the request came over https, and TLS 1.1 is refused.
func TestHTTPSByServerName(t *testing.T) {
	a := startWeb(t, "a")
	wwwCert, wwwKey, www := writeCert(t, time.Now().Add(365*24*time.Hour), "www.example.test")
	apiCert, apiKey, api := writeCert(t, time.Now().Add(5*24*time.Hour), "api.example.test")
	vc := httpClusterConfig(t, srv(a, ""))
	vc.TLS = &config.TLS{CertFile: wwwCert, KeyFile: wwwKey, MinVersion: "1.2", CertWarnDays: 14,
		Certificates: []config.CertPair{{CertFile: apiCert, KeyFile: apiKey}}}
	c, url := runHTTP(t, vc, HTTPOptions{})
	for _, tt := range []struct {
		name  string
		h2    bool
		proto string
	}{
		{"www.example.test", true, "HTTP/2.0"},
		{"api.example.test", true, "HTTP/2.0"},
		{"api.example.test", false, "HTTP/1.1"},
	} {
		// Each client trusts only the certificate of its name.
		trust := www
		if tt.name == "api.example.test" {
			trust = api
		}
		e, resp := get(t, tlsClient(tt.name, tt.h2, trust), newReq(t, "GET", url, nil))
		if resp.StatusCode != 200 || resp.Proto != tt.proto {
			t.Errorf("%s: status %d over %s, want 200 over %s", tt.name, resp.StatusCode, resp.Proto, tt.proto)
		}
		if got := e.Header.Get("X-Forwarded-Proto"); got != "https" {
			t.Errorf("%s: X-Forwarded-Proto %q, want https", tt.name, got)
		}
	}
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true,
		MaxVersion: tls.VersionTLS11}}, Timeout: 5 * time.Second}
	if _, err := old.Get(url); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
	certs := c.Stats().Certificates
	if len(certs) != 2 || certs[0].Warning != "" || !strings.HasPrefix(certs[1].Warning, "certificate expires in 4 days") {
		t.Errorf("certificates in status: %+v; want api's near its expiry", certs)
	}
}

// TestHTTPSRedirect: the redirect port answers 308 to the https URL.
func TestHTTPSRedirect(t *testing.T) {
	a := startWeb(t, "a")
	cert, key, _ := writeCert(t, time.Now().Add(time.Hour), "www.example.test")
	vc := httpClusterConfig(t, srv(a, ""))
	vc.Port = int(deadAddr(t).Port())
	vc.TLS = &config.TLS{CertFile: cert, KeyFile: key, MinVersion: "1.2"}
	vc.HTTP.RedirectPort = int(deadAddr(t).Port())
	c, _ := runHTTP(t, vc, HTTPOptions{})
	req := newReq(t, "GET", "http://"+c.RedirectAddr().String()+"/a/b?c=d", nil)
	req.Host = "www.example.test"
	resp, err := plainClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := "https://www.example.test:" + strconv.Itoa(vc.Port) + "/a/b?c=d"
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Errorf("redirect: %d to %q, want 308 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
}

// TestHTTPSCertificateReload: a reload serves the new certificate; a
// broken file keeps the old one.
func TestHTTPSCertificateReload(t *testing.T) {
	a := startWeb(t, "a")
	cert, key, first := writeCert(t, time.Now().Add(time.Hour), "www.example.test")
	vc := httpClusterConfig(t, srv(a, ""))
	vc.TLS = &config.TLS{CertFile: cert, KeyFile: key, MinVersion: "1.2"}
	c, url := runHTTP(t, vc, HTTPOptions{})
	if _, resp := get(t, tlsClient("www.example.test", false, first), newReq(t, "GET", url, nil)); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	cert2, key2, second := writeCert(t, time.Now().Add(2*time.Hour), "www.example.test")
	copyFile(t, cert2, cert)
	copyFile(t, key2, key)
	if changed, err := c.ReloadCertificates(); err != nil || !changed {
		t.Fatalf("reload: changed %v, %v", changed, err)
	}
	if changed, err := c.ReloadCertificates(); err != nil || changed {
		t.Fatalf("reload of the same files: changed %v, %v", changed, err)
	}
	if _, resp := get(t, tlsClient("www.example.test", false, second), newReq(t, "GET", url, nil)); resp.StatusCode != 200 {
		t.Fatalf("after reload: status %d", resp.StatusCode)
	}
	copyFile(t, "/dev/null", key)
	if _, err := c.ReloadCertificates(); err == nil {
		t.Error("a broken key file was accepted")
	}
	if _, resp := get(t, tlsClient("www.example.test", false, second), newReq(t, "GET", url, nil)); resp.StatusCode != 200 {
		t.Fatalf("after a failed reload: status %d", resp.StatusCode)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestHTTPSh2NeedsItsPreface: a client that chose h2 by ALPN and then
// speaks HTTP/1.1 is cut (RFC 9113 §3.4), not answered in HTTP/1.1.
func TestHTTPSh2NeedsItsPreface(t *testing.T) {
	a := startWeb(t, "a")
	cert, key, _ := writeCert(t, time.Now().Add(time.Hour), "www.example.test")
	vc := httpClusterConfig(t, srv(a, ""))
	vc.TLS = &config.TLS{CertFile: cert, KeyFile: key, MinVersion: "1.2"}
	_, url := runHTTP(t, vc, HTTPOptions{})
	for _, tt := range []struct {
		proto string
		cut   bool
	}{{"h2", true}, {"http/1.1", false}} {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{tt.proto}})
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		b, _ := io.ReadAll(io.LimitReader(conn, 12))
		conn.Close()
		if answered := strings.HasPrefix(string(b), "HTTP/1.1 200"); answered == tt.cut {
			t.Errorf("ALPN %s then HTTP/1.1: got %q; want cut %v", tt.proto, b, tt.cut)
		}
	}
}

// TestHTTPServerTLS: with server_tls the proxy speaks TLS to a server
// whose certificate chains to server_ca_file; one that does not is 502.
func TestHTTPServerTLS(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "over tls: "+strconv.FormatBool(r.TLS != nil))
	}))
	t.Cleanup(up.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o644)
	_, _, other := writeCert(t, time.Now().Add(time.Hour), "other.test")
	otherCA := filepath.Join(t.TempDir(), "other.pem")
	os.WriteFile(otherCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Raw}), 0o644)
	for _, tt := range []struct {
		ca   string
		want int
	}{{ca, 200}, {otherCA, 502}} {
		vc := httpClusterConfig(t, config.Server{Name: "up", Address: up.Listener.Addr().String(), Weight: 1})
		vc.HTTP.ServerTLS, vc.HTTP.ServerCAFile, vc.HTTP.ServerName = true, tt.ca, "example.com"
		_, url := runHTTP(t, vc, HTTPOptions{})
		resp, err := plainClient().Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want || tt.want == 200 && string(body) != "over tls: true" {
			t.Errorf("CA %s: %d %q, want %d", filepath.Base(tt.ca), resp.StatusCode, body, tt.want)
		}
	}
}
