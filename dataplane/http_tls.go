package dataplane

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// certStore holds an HTTP cluster's certificates: the first is the
// default, the others are offered to a client whose SNI they are valid
// for. Reload swaps them all at once; handshakes in progress keep theirs.
type certStore struct {
	cfg   config.TLS
	certs atomic.Pointer[[]loadedCert]
}

// loadedCert is one certificate pair, parsed.
type loadedCert struct {
	cert     *tls.Certificate
	certFile string
}

// CertInfo describes a served certificate for status.
type CertInfo struct {
	File     string
	Names    []string
	NotAfter time.Time
	// Warning is set when the certificate expires within cert_warn_days
	// (or has expired).
	Warning string
}

func loadCerts(cfg config.TLS) (*certStore, error) {
	s := &certStore{cfg: cfg}
	if _, err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// reload reads every pair and reports whether any changed; on any error
// the running set stays.
func (s *certStore) reload() (changed bool, err error) {
	pairs := append([]config.CertPair{{CertFile: s.cfg.CertFile, KeyFile: s.cfg.KeyFile}}, s.cfg.Certificates...)
	out := make([]loadedCert, 0, len(pairs))
	for _, p := range pairs {
		c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
		if err != nil {
			return false, fmt.Errorf("tls: load %s: %w", p.CertFile, err)
		}
		if c.Leaf == nil {
			if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return false, fmt.Errorf("tls: parse %s: %w", p.CertFile, err)
			}
		}
		out = append(out, loadedCert{cert: &c, certFile: p.CertFile})
	}
	if old := s.certs.Load(); old != nil && sameCerts(*old, out) {
		return false, nil
	}
	s.certs.Store(&out)
	return true, nil
}

// sameCerts reports whether a and b hold the same certificates and keys.
func sameCerts(a, b []loadedCert) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].cert.Leaf.Equal(b[i].cert.Leaf) || !samePrivateKey(a[i].cert, b[i].cert) {
			return false
		}
	}
	return true
}

// samePrivateKey compares the keys of two certificates.
func samePrivateKey(a, b *tls.Certificate) bool {
	ka, ok := a.PrivateKey.(interface{ Equal(crypto.PrivateKey) bool })
	return ok && ka.Equal(b.PrivateKey)
}

// get picks the certificate for a handshake: the first valid for the
// client's SNI, else the default.
func (s *certStore) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	certs := *s.certs.Load()
	if len(certs) > 1 && hello.ServerName != "" {
		for _, c := range certs {
			if c.cert.Leaf.VerifyHostname(hello.ServerName) == nil && hello.SupportsCertificate(c.cert) == nil {
				return c.cert, nil
			}
		}
	}
	return certs[0].cert, nil
}

// config is the server side TLS config: TLS 1.2 or 1.3 at least, the
// certificate by SNI. http.Server adds h2 and http/1.1 to NextProtos.
func (s *certStore) config() *tls.Config {
	minVersion := uint16(tls.VersionTLS12)
	if s.cfg.MinVersion == "1.3" {
		minVersion = tls.VersionTLS13
	}
	return &tls.Config{
		MinVersion:     minVersion,
		GetCertificate: s.get,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}

// info describes the certificates at now.
func (s *certStore) info(now time.Time) []CertInfo {
	var out []CertInfo
	for _, c := range *s.certs.Load() {
		l := c.cert.Leaf
		ci := CertInfo{File: c.certFile, Names: l.DNSNames, NotAfter: l.NotAfter}
		if len(ci.Names) == 0 && l.Subject.CommonName != "" {
			ci.Names = []string{l.Subject.CommonName}
		}
		left := l.NotAfter.Sub(now)
		switch {
		case left <= 0:
			ci.Warning = "certificate expired " + l.NotAfter.UTC().Format(time.RFC3339)
		case s.cfg.CertWarnDays > 0 && left < time.Duration(s.cfg.CertWarnDays)*24*time.Hour:
			ci.Warning = fmt.Sprintf("certificate expires in %d days (%s)", int(left.Hours()/24),
				l.NotAfter.UTC().Format(time.RFC3339))
		}
		out = append(out, ci)
	}
	return out
}
