package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nginxEcho runs nginx in box's namespace on port 80 answering
// "NAME xff=<X-Forwarded-For> proto=<X-Forwarded-Proto>".
func (l *lab) nginxEcho(box string) {
	l.t.Helper()
	if _, err := exec.LookPath("nginx"); err != nil {
		l.t.Skip("needs nginx: run scripts/deps.sh")
	}
	dir := filepath.Join(l.dir, "nginx-"+box)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.t.Fatal(err)
	}
	conf := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen 80;
    location / { default_type text/plain; return 200 "%[2]s xff=$http_x_forwarded_for proto=$http_x_forwarded_proto\n"; }
  }
}
`, dir, box)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.ns(box), "nginx", "-c", path, "-p", dir)
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("nginx in %s: %v", box, err)
	}
	p := &proc{cmd: cmd, log: filepath.Join(dir, "error.log"), done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	l.nodes["nginx-"+box] = p
}

// selfSigned writes a self-signed P-256 certificate for name and its key
// in the lab's folder and returns their paths.
func (l *lab) selfSigned(name string) (certFile, keyFile string) {
	l.t.Helper()
	return l.selfSignedAs(name, name)
}

// selfSignedAs is selfSigned into the files file.pem and file.key.
func (l *lab) selfSignedAs(name, file string) (certFile, keyFile string) {
	l.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		l.t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		l.t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(l.dir, file+".pem"), filepath.Join(l.dir, file+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		l.t.Fatal(err)
	}
	return certFile, keyFile
}

// https runs curl in the client namespace against https://host/ at the
// VIP, trusting only ca, with the cookie jar (if any); it returns the
// output (the body, then what -w adds).
func (l *lab) https(host, ca, jar string, args ...string) string {
	l.t.Helper()
	a := []string{"netns", "exec", l.ns("client"), "curl", "-sS", "-m", "3", "--resolve", host + ":443:" + vip,
		"--cacert", ca}
	if jar != "" {
		a = append(a, "-b", jar, "-c", jar)
	}
	a = append(append(a, args...), "https://"+host+"/")
	out, err := exec.Command("ip", a...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("curl %s: %v\n%s", host, err, out)
	}
	return string(out)
}

// TestHTTPSClusterThroughTheVIP: an https cluster with two certificates
// and cookie persistence in front of two nginx: each name gets its
// certificate (SNI), HTTP/2 is negotiated, nginx sees the client's
// address in X-Forwarded-For, port 80 redirects, and clients keep their
// server by their cookies across a cable pull of the master and the plug
// back (one followed request by request, cookieClients more each with a
// jar of its own, spread over both servers by fallback: none): both
// boxes accept the cookies, with nothing replicated for them. Last, a
// renewed certificate is served after `tandem reload`.
func TestHTTPSClusterThroughTheVIP(t *testing.T) {
	l := newLab(t)
	l.nginxEcho("be1")
	l.nginxEcho("be2")
	wwwCert, wwwKey := l.selfSigned("www.example.test")
	apiCert, apiKey := l.selfSigned("api.example.test")
	o := nodeOpts{preempt: true, extra: fmt.Sprintf(`clusters:
  - name: www
    vip: %s
    port: 443
    protocol: http
    tls:
      cert_file: %s
      key_file: %s
      certificates: [{cert_file: %s, key_file: %s}]
    http: {redirect_port: 80}
    persistence: {mode: cookie, name: SRV, fallback: none}
    health_check: {type: http, path: /, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}
    servers:
      - {name: be1, address: "198.18.0.21:80"}
      - {name: be2, address: "198.18.0.22:80"}
`, vip, wwwCert, wwwKey, apiCert, apiKey)}
	l.start("lb1", o)
	l.start("lb2", o)
	l.waitFor("lb1 MASTER with healthy servers, lb2 in sync", 15*time.Second, func() bool {
		st, err := l.status("lb1")
		if err != nil || st.State != "MASTER" || len(st.Clusters) == 0 || !l.holdsVIP("lb1") || l.holdsVIP("lb2") || !l.inSync("lb2") {
			return false
		}
		for _, s := range st.Clusters[0].Servers {
			if !s.Healthy {
				return false
			}
		}
		return true
	})

	// SNI: each name is served its own certificate (curl trusts only it).
	for _, tt := range []struct{ host, ca string }{{"www.example.test", wwwCert}, {"api.example.test", apiCert}} {
		out := l.https(tt.host, tt.ca, "", "-w", "http%{http_version}")
		if !strings.Contains(out, "xff=198.18.0.2 proto=https") || !strings.HasSuffix(out, "http2") {
			t.Errorf("%s: %q; want nginx to see the client's address over https, and HTTP/2", tt.host, out)
		}
	}
	// Port 80 redirects to https.
	out, _ := exec.Command("ip", "netns", "exec", l.ns("client"), "curl", "-sS", "-m", "3", "-o", "/dev/null",
		"-w", "%{http_code} %{redirect_url}", "http://"+vip+"/a?b=1").CombinedOutput()
	if string(out) != "308 https://"+vip+"/a?b=1" {
		t.Errorf("redirect: %q", out)
	}

	// Many cookie clients (one jar each) spread over both servers.
	before := l.cookieClients(wwwCert)
	per := map[string]int{}
	for _, s := range before {
		per[s]++
	}
	if per["be1"] == 0 || per["be2"] == 0 || per["FAIL"] > 0 {
		t.Fatalf("%d cookie clients: %v; want both servers, no failure", cookieClients, per)
	}

	// Cookie persistence: a client keeps its server.
	jar := filepath.Join(l.dir, "cookies.txt")
	first := strings.Fields(l.https("www.example.test", wwwCert, jar))[0]
	keeps := func(when string) {
		t.Helper()
		for range 6 {
			if got := strings.Fields(l.https("www.example.test", wwwCert, jar))[0]; got != first {
				t.Fatalf("%s: the client with a cookie for %s was served by %s", when, first, got)
			}
		}
	}
	keeps("on lb1")
	if b, _ := os.ReadFile(jar); !strings.Contains(string(b), "\tSRV\t") {
		t.Fatalf("no SRV cookie in the jar:\n%s", b)
	}
	if err := l.script("pull", "lb1"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb2 MASTER", 5*time.Second, func() bool { return l.state("lb2") == "MASTER" && l.holdsVIP("lb2") })
	keeps("after the cable pull, on lb2")
	if same := sameCookieServers(before, l.cookieClients(wwwCert)); same != cookieClients {
		t.Fatalf("after the cable pull: %d of %d cookie clients kept their server", same, cookieClients)
	}
	if err := l.script("plug", "lb1"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb1 to preempt", 15*time.Second, func() bool {
		return l.state("lb1") == "MASTER" && l.state("lb2") == "BACKUP" && l.holdsVIP("lb1") && !l.holdsVIP("lb2")
	})
	keeps("after the plug, on lb1 again")
	if same := sameCookieServers(before, l.cookieClients(wwwCert)); same != cookieClients {
		t.Fatalf("after the plug: %d of %d cookie clients kept their server", same, cookieClients)
	}

	st, err := l.status("lb1")
	if err != nil {
		t.Fatal(err)
	}
	h := st.Clusters[0].HTTP
	if h == nil || h.Status["2xx"] == 0 || len(h.Certificates) != 2 {
		t.Errorf("lb1's http status: %+v", h)
	}

	// A renewed certificate in the same files: `tandem reload` serves it
	// (curl now trusts only the new one), and says so.
	oldCert, _ := os.ReadFile(wwwCert)
	newCert, newKey := l.selfSignedAs("www.example.test", "renewed")
	for from, to := range map[string]string{newCert: wwwCert, newKey: wwwKey} {
		b, _ := os.ReadFile(from)
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := os.ReadFile(wwwCert); string(b) == string(oldCert) {
		t.Fatal("the renewed certificate is the old one")
	}
	out, err = exec.Command(binDir+"/tandem", "reload", "--socket", filepath.Join(l.dir, "lb1.sock")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cluster www: certificates reloaded") {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	if got := strings.Fields(l.https("www.example.test", wwwCert, jar))[0]; got != first {
		t.Errorf("after the certificate reload: served by %s, want %s", got, first)
	}
}

// cookieClients is how many clients, each with its own cookie jar,
// TestHTTPSClusterThroughTheVIP follows across the pull and the plug.
const cookieClients = 30

// cookieClients makes one request from each cookie client (jar i in the
// lab's folder, created by the first call) and returns who served each
// ("FAIL" for a failure).
func (l *lab) cookieClients(ca string) []string {
	l.t.Helper()
	script := fmt.Sprintf(`for i in $(seq 1 %d); do
  curl -s -m 3 --resolve www.example.test:443:%s --cacert %s -b %s/jar$i -c %s/jar$i https://www.example.test/ | cut -d' ' -f1 | grep . || echo FAIL
done`, cookieClients, vip, ca, l.dir, l.dir)
	out, err := exec.Command("ip", "netns", "exec", l.ns("client"), "sh", "-c", script).Output()
	if err != nil {
		l.t.Fatalf("cookie clients: %v", err)
	}
	got := strings.Fields(string(out))
	if len(got) != cookieClients {
		l.t.Fatalf("cookie clients: %d answers, want %d: %q", len(got), cookieClients, out)
	}
	return got
}

// sameCookieServers counts the clients served by the same server both times.
func sameCookieServers(a, b []string) int {
	n := 0
	for i := range a {
		if a[i] == b[i] && a[i] != "FAIL" {
			n++
		}
	}
	return n
}
