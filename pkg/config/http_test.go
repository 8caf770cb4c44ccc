package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeTestCert writes a self-signed ECDSA certificate for name and its
// key, and returns their paths.
func writeTestCert(t *testing.T, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestHTTPClusterProblems breaks one rule of the http keys at a time and
// asserts the exact line printed for it (base: load_test.go).
func TestHTTPClusterProblems(t *testing.T) {
	cert, key := writeTestCert(t, "www.example.test")
	// http turns the base cluster into an http cluster with extra lines
	// after its protocol (line 20), so they start at line 21.
	http := func(extra string) string {
		return edit(t, "    port: 80", "    port: 80\n    protocol: http"+extra,
			"mode: source_ip", "mode: cookie")
	}
	tlsOK := "\n    tls: {cert_file: " + cert + ", key_file: " + key + "}"
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"valid http with tls and cookie", http(tlsOK + "\n    http: {redirect_port: 8080, trusted_proxies: [198.18.0.0/15]}"), nil},
		{"nat refused", http("\n    mode: nat\n    nat: {return: snat, snat_address: 198.18.0.100}"), []string{
			"FILE:21: clusters[0].mode: protocol: http is served by the proxy; it cannot be mode: nat"}},
		{"tls on tcp", edit(t, "    port: 80", "    port: 80"+tlsOK),
			[]string{`FILE:20: clusters[0].tls: only for protocol: http clusters (this one is "tcp")`}},
		{"cert missing", http("\n    tls: {cert_file: /nonexistent.pem, key_file: /nonexistent.key}"), []string{
			"FILE:21: clusters[0].tls.cert_file: cannot load the certificate and key: open /nonexistent.pem: no such file or directory"}},
		{"tls 1.1 refused", http("\n    tls: {cert_file: " + cert + ", key_file: " + key + ", min_version: \"1.1\"}"),
			[]string{`FILE:21: clusters[0].tls.min_version: must be 1.2 or 1.3 (got "1.1")`}},
		{"redirect without tls", http("\n    http: {redirect_port: 8080}"),
			[]string{"FILE:21: clusters[0].http.redirect_port: needs tls: the redirect goes to https on port 80"}},
		{"redirect port taken", http(tlsOK+"\n    http: {redirect_port: 81}") + "  - {name: other, vip: 198.18.0.100, port: 81, servers: [{name: a, address: 198.18.0.23:80}]}\n",
			[]string{"FILE:35: clusters[1]: listens on 198.18.0.100 port 81/tcp like clusters[0] (web)"}},
		{"http and tcp share a port", http("") + "  - {name: other, vip: 198.18.0.100, port: 80, servers: [{name: a, address: 198.18.0.23:80}]}\n",
			[]string{"FILE:33: clusters[1]: listens on 198.18.0.100 port 80/tcp like clusters[0] (web)"}},
		{"trusted proxy not a CIDR", http("\n    http: {trusted_proxies: [nowhere]}"),
			[]string{`FILE:21: clusters[0].http.trusted_proxies[0]: must be a CIDR prefix, like 198.18.0.0/15 (got "nowhere")`}},
		{"access log format", http("\n    http: {access_log_format: clf}"),
			[]string{`FILE:21: clusters[0].http.access_log_format: must be combined or json (got "clf")`}},
		{"rule to an unknown pool", http("\n    http:\n      rules: [{path_prefix: /api, pool: api}]"),
			[]string{`FILE:22: clusters[0].http.rules[0].pool: no server has pool "api"`}},
		{"rule with no condition", edit(t, "    port: 80", "    port: 80\n    protocol: http\n    http:\n      rules: [{pool: api}]",
			"        weight: 5", "        weight: 5\n        pool: api"),
			[]string{"FILE:22: clusters[0].http.rules[0]: needs host, path_prefix or header"}},
		{"rule path", edit(t, "    port: 80", "    port: 80\n    protocol: http\n    http:\n      rules: [{path_prefix: api, pool: api}]",
			"        weight: 5", "        weight: 5\n        pool: api"),
			[]string{`FILE:22: clusters[0].http.rules[0].path_prefix: must start with / (got "api")`}},
		{"server_name without server_tls", http("\n    http: {server_name: www.example.test}"),
			[]string{"FILE:21: clusters[0].http.server_tls: server_ca_file, server_name and server_skip_verify need server_tls: true"}},
		{"server_ca_file missing", http("\n    http: {server_tls: true, server_ca_file: /nonexistent.pem}"),
			[]string{"FILE:21: clusters[0].http.server_ca_file: cannot read: open /nonexistent.pem: no such file or directory"}},
		{"pool on tcp", edit(t, "        weight: 5", "        weight: 5\n        pool: api"),
			[]string{"FILE:32: clusters[0].servers[1].pool: only for protocol: http clusters"}},
		{"same_site none needs secure", edit(t, "    port: 80", "    port: 80\n    protocol: http",
			"mode: source_ip", "mode: cookie\n      same_site: none"),
			[]string{"FILE:26: clusters[0].persistence.same_site: none needs secure: true (browsers refuse it otherwise)"}},
		{"cookie fallback", edit(t, "    port: 80", "    port: 80\n    protocol: http",
			"mode: source_ip", "mode: cookie\n      fallback: url"),
			[]string{`FILE:26: clusters[0].persistence.fallback: must be source_ip or none (got "url")`}},
		{"cookie name", edit(t, "    port: 80", "    port: 80\n    protocol: http",
			"mode: source_ip", "mode: cookie\n      name: \"a b\""),
			[]string{`FILE:26: clusters[0].persistence.name: must be a cookie name: letters, digits and !#$%&'*+-.^_` + "`" + `|~ (got "a b")`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertProblems(t, problems(t, tt.src), tt.want)
		})
	}
}

// TestHTTPDefaults checks the defaults an http cluster gets.
func TestHTTPDefaults(t *testing.T) {
	c, err := Load(writeConfig(t, edit(t, "    port: 80", "    port: 80\n    protocol: http",
		"mode: source_ip", "mode: cookie", "      timeout: 10m\n", "")))
	if err != nil {
		t.Fatal(err)
	}
	vc := c.Clusters[0]
	h, p := vc.HTTP, vc.Persistence
	if h == nil || h.HeaderTimeout != DefaultHTTPHeaderTimeout || h.MaxHeaderBytes != DefaultHTTPMaxHeaderBytes ||
		h.AccessLogFormat != AccessLogCombined || h.ConnectTimeout != DefaultHTTPConnectTimeout {
		t.Errorf("http defaults: %+v", h)
	}
	if p.Name != "TANDEM" || p.Path != "/" || p.SameSite != "lax" || p.HTTPOnly == nil || !*p.HTTPOnly ||
		p.Timeout != DefaultCookieFallback || p.Fallback != "source_ip" {
		t.Errorf("cookie defaults: %+v", p)
	}
}

// TestExampleHTTPS: configs/example-https.yaml validates once its
// certificate paths point at real files, and example-full.yaml shows
// every key of the http block and of cookie persistence.
func TestExampleHTTPS(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "configs", "example-https.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	for _, name := range []string{"www", "api"} {
		cert, key := writeTestCert(t, name+".example.com")
		src = strings.ReplaceAll(src, "/etc/tandem/"+name+".pem", cert)
		src = strings.ReplaceAll(src, "/etc/tandem/"+name+".key", key)
	}
	src = strings.Replace(src, "secret_file: /etc/tandem/cluster.key", "secret: "+testKey, 1)
	src = strings.Replace(src, "access_log: /var/log/tandem/www.log", "access_log: stdout", 1)
	if got := problems(t, src); len(got) > 0 {
		t.Errorf("example-https.yaml: %v", got)
	}
	c, err := Load(filepath.Join("..", "..", "configs", "example-full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(c.Clusters, func(vc VirtualCluster) bool { return vc.IsHTTP() })
	if i < 0 {
		t.Fatal("example-full.yaml has no http cluster")
	}
	k := "clusters[" + strconv.Itoa(i) + "]"
	for f := range reflect.TypeFor[HTTP]().Fields() {
		if key := k + ".http." + f.Tag.Get("mapstructure"); c.lines[key] == 0 {
			t.Errorf("example-full.yaml does not show %s", key)
		}
	}
	for _, key := range []string{"name", "max_age", "path", "domain", "secure", "http_only", "same_site", "fallback"} {
		if c.lines[k+".persistence."+key] == 0 {
			t.Errorf("example-full.yaml does not show %s.persistence.%s", k, key)
		}
	}
	if c.lines[k+".servers[2].pool"] == 0 {
		t.Errorf("example-full.yaml does not show %s.servers[].pool", k)
	}
}
