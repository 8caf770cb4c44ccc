package healthcheck

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pemBuf []byte
	file   string // the CA's PEM, for ca_file
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tandem test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, pemBuf: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	ca.file = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca.file, ca.pemBuf, 0o644); err != nil {
		t.Fatal(err)
	}
	return ca
}

// leaf is a server certificate and its PEM files.
type leaf struct {
	tls      tls.Certificate
	certFile string
	keyFile  string
}

// issue signs a server certificate valid from notBefore to notAfter for
// the names: IP addresses become IP SANs, the rest DNS names.
func (ca *testCA) issue(t *testing.T, notBefore, notAfter time.Time, names ...string) leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l := leaf{tls: pair, certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	if err := os.WriteFile(l.certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

// valid issues a certificate valid from an hour ago for the given time.
func (ca *testCA) valid(t *testing.T, left time.Duration, names ...string) leaf {
	t.Helper()
	return ca.issue(t, time.Now().Add(-time.Hour), time.Now().Add(left), names...)
}

// serveTLS serves TLS handshakes with cert on a loopback port.
func serveTLS(t *testing.T, cert leaf) netip.AddrPort {
	t.Helper()
	ln := listenTCP(t)
	serveTCP(t, ln, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert.tls}})
		if tc.Handshake() == nil {
			buf := make([]byte, 1)
			_, _ = tc.Read(buf) // until the client's close_notify
		}
	})
	return addrOf(t, ln.Addr())
}

func TestTCPTLS(t *testing.T) {
	ca := newTestCA(t)
	good := serveTLS(t, ca.valid(t, 90*day, "127.0.0.1"))
	expiring := serveTLS(t, ca.valid(t, 5*day, "127.0.0.1"))
	expired := serveTLS(t, ca.issue(t, time.Now().Add(-30*day), time.Now().Add(-day), "127.0.0.1"))
	otherName := serveTLS(t, ca.valid(t, 90*day, "other.example"))
	named := serveTLS(t, ca.valid(t, 90*day, "svc.example"))
	plain := listenTCP(t)
	serveTCP(t, plain, func(c net.Conn) { c.Write([]byte("220 not TLS\r\n")) })
	silent := listenTCP(t)
	serveTCP(t, silent, func(c net.Conn) { time.Sleep(time.Second) })

	hc := config.HealthCheck{Type: "tcp", TLS: true, CAFile: ca.file, CertWarnDays: 14}
	tests := []struct {
		name    string
		hc      config.HealthCheck
		addr    netip.AddrPort
		ok      bool
		detail  string
		warning string
	}{
		{"valid", hc, good, true, "TLS handshake in", ""},
		{"expires in 5 days: passes with a warning", hc, expiring, true, "certificate expires in 5 days", "certificate expires in 5 days ("},
		{"warning off", config.HealthCheck{Type: "tcp", TLS: true, CAFile: ca.file}, expiring, true, "certificate expires in 5 days", ""},
		{"expired", hc, expired, false, "TLS: certificate has expired or is not yet valid", ""},
		{"other name", hc, otherName, false, "TLS: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs", ""},
		{"server_name", config.HealthCheck{Type: "tcp", TLS: true, CAFile: ca.file, ServerName: "svc.example"}, named, true, "TLS handshake", ""},
		{"unknown CA", config.HealthCheck{Type: "tcp", TLS: true}, good, false, "TLS: certificate signed by unknown authority", ""},
		{"not TLS", hc, addrOf(t, plain.Addr()), false, "TLS: ", ""},
		{"silent server", hc, addrOf(t, silent.Addr()), false, "TLS: timeout after", ""},
		{"refused", hc, closedPort(t), false, "connection refused", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := check(t, mustNew(t, tt.hc), tt.addr, 300*time.Millisecond)
			wantResult(t, res, tt.ok, tt.detail)
			if tt.warning == "" && res.Warning != "" || !strings.Contains(res.Warning, tt.warning) {
				t.Errorf("Warning %q, want %q", res.Warning, tt.warning)
			}
			if tt.ok && res.CertNotAfter.IsZero() {
				t.Error("no CertNotAfter from a TLS server")
			}
		})
	}
	res := check(t, mustNew(t, hc), expiring, time.Second)
	if d := res.CertDaysLeft(time.Now()); d == nil || *d != 5 {
		t.Errorf("CertDaysLeft = %v, want 5", d)
	}
	if d := check(t, mustNew(t, config.HealthCheck{Type: "tcp"}), good, time.Second).CertDaysLeft(time.Now()); d != nil {
		t.Errorf("a plain tcp check has CertDaysLeft %d", *d)
	}
}

func TestHTTPSAndHeaders(t *testing.T) {
	ca := newTestCA(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "www.example.org" {
			http.Error(w, "unknown site "+r.Host, http.StatusNotFound)
			return
		}
		w.Header().Set("X-Backend", "web7")
		w.Header().Add("Cache-Status", "hit")
		w.Header().Add("Cache-Status", "fresh")
		w.Write([]byte("ok"))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.valid(t, 6*day, "www.example.org").tls}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := addrOf(t, srv.Listener.Addr())

	site := config.HealthCheck{Type: "http", Path: "/", Host: "www.example.org", TLS: true, CAFile: ca.file, CertWarnDays: 7}
	with := func(f func(*config.HealthCheck)) config.HealthCheck { h := site; f(&h); return h }
	tests := []struct {
		name   string
		hc     config.HealthCheck
		ok     bool
		detail string
	}{
		{"https with host", site, true, "HTTP 200 in"},
		{"no host: the site is not served", with(func(h *config.HealthCheck) { h.Host = ""; h.ServerName = "www.example.org" }),
			false, "HTTP 404, want 200"},
		{"no host, IP checked in the certificate", with(func(h *config.HealthCheck) { h.Host = "" }),
			false, "TLS: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs"},
		{"wrong server_name", with(func(h *config.HealthCheck) { h.ServerName = "api.example.org" }),
			false, "TLS: certificate is valid for www.example.org, not api.example.org"},
		{"header present", with(func(h *config.HealthCheck) { h.ExpectHeader = "X-Backend" }), true, "HTTP 200"},
		{"header matches", with(func(h *config.HealthCheck) { h.ExpectHeader = "x-backend: ^web[0-9]+$" }), true, "HTTP 200"},
		{"second value matches", with(func(h *config.HealthCheck) { h.ExpectHeader = "Cache-Status: fresh" }), true, "HTTP 200"},
		{"header does not match", with(func(h *config.HealthCheck) { h.ExpectHeader = "X-Backend: ^db" }),
			false, `HTTP 200, header X-Backend: "web7" did not match ^db`},
		{"header missing", with(func(h *config.HealthCheck) { h.ExpectHeader = "X-Maintenance" }),
			false, "HTTP 200, no X-Maintenance header"},
		{"plain http to a TLS server", config.HealthCheck{Type: "http", Path: "/", Host: "www.example.org"}, false, "HTTP 400, want 200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := check(t, mustNew(t, tt.hc), addr, time.Second)
			wantResult(t, res, tt.ok, tt.detail)
		})
	}
	res := check(t, mustNew(t, site), addr, time.Second)
	if !strings.Contains(res.Detail, "certificate expires in 6 days") || !strings.HasPrefix(res.Warning, "certificate expires in 6 days") {
		t.Errorf("a 6-day certificate with cert_warn_days 7: detail %q, warning %q", res.Detail, res.Warning)
	}
}
