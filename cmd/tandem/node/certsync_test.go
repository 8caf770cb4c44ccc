package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/dataplane"
	"github.com/tandem-lb/tandem/pkg/config"
)

// testPair writes a self-signed certificate issued at notBefore, and its
// key, into dir under name, and returns the pair.
func testPair(t *testing.T, dir, name string, notBefore time.Time) config.CertPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(notBefore.UnixNano()), Subject: pkix.Name{CommonName: "www.example.test"},
		DNSNames: []string{"www.example.test"}, NotBefore: notBefore, NotAfter: notBefore.Add(90 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	p := config.CertPair{CertFile: filepath.Join(dir, name+".pem"), KeyFile: filepath.Join(dir, name+".key")}
	os.WriteFile(p.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(p.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	return p
}

func mustDoc(t *testing.T, p config.CertPair) []byte {
	t.Helper()
	d, err := certDoc(p)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestTakePeerCert: only a valid, different and newer certificate (or
// one replacing local files that do not load) is taken.
func TestTakePeerCert(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	old, renewed := mustDoc(t, testPair(t, dir, "old", now.Add(-48*time.Hour))), mustDoc(t, testPair(t, dir, "new", now.Add(-time.Hour)))
	for _, tt := range []struct {
		name        string
		local, peer []byte
		want        bool
	}{
		{"peer's renewed", old, renewed, true},
		{"peer's older", renewed, old, false},
		{"the same", renewed, renewed, false},
		{"local files missing", nil, renewed, true},
		{"peer's broken", old, []byte("\x05junk!"), false},
	} {
		if got, why := takePeerCert(tt.local, tt.peer); got != tt.want {
			t.Errorf("%s: take %v (%s), want %v", tt.name, got, why, tt.want)
		}
	}
}

// TestApplyPeerCert: the peer's renewed certificate is written into this
// box's files (the key owner-only) and served at once; an older one
// changes nothing.
func TestApplyPeerCert(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	local := testPair(t, dir, "www", now.Add(-48*time.Hour))
	vc := config.VirtualCluster{Name: "www", VIP: "127.0.0.1", Protocol: "http", Algorithm: "round_robin", Mode: "proxy",
		TLS:     &config.TLS{CertFile: local.CertFile, KeyFile: local.KeyFile, MinVersion: "1.2"},
		Servers: []config.Server{{Name: "a", Address: "127.0.0.1:9", Weight: 1}}}
	pool, err := dataplane.PoolFor(vc)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := dataplane.NewHTTPCluster(vc, pool, dataplane.HTTPOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{log: slog.New(slog.DiscardHandler)}
	n.cur.Store(&generation{cfg: &config.Config{}, clusters: []*vcluster{{cfg: vc, pool: pool, http: hc, ln: hc}}})
	notAfter := func() time.Time { return hc.Stats().Certificates[0].NotAfter }
	before := notAfter()

	older := mustDoc(t, testPair(t, dir, "older", now.Add(-72*time.Hour)))
	n.applyPeerCert("tls/www/0", older)
	if notAfter() != before {
		t.Fatal("an older certificate of the peer was taken")
	}
	renewedPair := testPair(t, dir, "renewed", now.Add(-time.Hour))
	n.applyPeerCert("tls/www/0", mustDoc(t, renewedPair))
	if notAfter() == before {
		t.Fatal("the peer's renewed certificate is not served")
	}
	if got, want := mustDoc(t, local), mustDoc(t, renewedPair); string(got) != string(want) {
		t.Error("the local files do not hold the peer's certificate")
	}
	if fi, err := os.Stat(local.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	n.applyPeerCert("tls/nosuch/0", older) // an unknown cluster: ignored
	n.applyPeerCert("tls/www/7", older)    // an unknown pair: ignored
}
