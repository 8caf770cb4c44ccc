package healthcheck

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// TestSMTPExim runs the smtp check against a real MTA, Debian's exim4
// with a config of the test's own on a loopback port: banner and EHLO,
// STARTTLS with a certificate that expires in 5 days (warned of), expect
// on the EHLO reply, and a stopped server.
func TestSMTPExim(t *testing.T) {
	needBinary(t, "/usr/sbin/exim4", "exim4-daemon-light")
	if os.Geteuid() != 0 {
		t.Skip("not root: exim runs a config of the test's own (-C) only for root, and its spool must belong to Debian-exim")
	}
	eu, err := user.Lookup("Debian-exim")
	if err != nil {
		t.Skipf("no Debian-exim user: %v", err)
	}
	uid, _ := strconv.Atoi(eu.Uid)
	gid, _ := strconv.Atoi(eu.Gid)

	// exim reads its certificate and writes its spool and logs as
	// Debian-exim: a folder of its own it can enter.
	dir, err := os.MkdirTemp("", "tandem-exim-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"spool", "log"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(dir, d), uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	ca := newTestCA(t)
	cert := ca.valid(t, 5*day, "127.0.0.1", "mx.tandem.test")
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for src, dst := range map[string]string{cert.certFile: certFile, cert.keyFile: keyFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dst, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	addr := freePort(t)
	conf := fmt.Sprintf(`primary_hostname = mx.tandem.test
spool_directory = %[1]s/spool
log_file_path = %[1]s/log/%%slog
keep_environment =
daemon_smtp_ports = %[2]d
local_interfaces = 127.0.0.1
tls_advertise_hosts = *
tls_certificate = %[3]s
tls_privatekey = %[4]s
acl_smtp_rcpt = deny_all
begin acl
deny_all:
  deny
`, dir, addr.Port(), certFile, keyFile)
	confFile := filepath.Join(dir, "exim.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// -bdf: the listening daemon, in the foreground; -q0 would run the
	// queue, which holds nothing: left out.
	d := startDaemon(t, filepath.Join(dir, "exim.out"), "/usr/sbin/exim4", "-C", confFile, "-bdf", "-oP", filepath.Join(dir, "exim.pid"))
	d.waitListening(t, addr)

	tls := config.HealthCheck{Type: "smtp", StartTLS: true, CAFile: ca.file, CertWarnDays: 14}
	tests := []struct {
		name    string
		hc      config.HealthCheck
		ok      bool
		detail  string
		warning string
	}{
		{"banner and EHLO", config.HealthCheck{Type: "smtp"}, true, "SMTP 220, EHLO 250 in", ""},
		{"expect", config.HealthCheck{Type: "smtp", Expect: "(?m)^PIPELINING$"}, true, "SMTP 220", ""},
		{"expect, not offered", config.HealthCheck{Type: "smtp", Expect: "(?m)^AUTH "}, false, "EHLO reply did not match (?m)^AUTH : \"mx.tandem.test Hello", ""},
		{"STARTTLS", tls, true, "SMTP 220, EHLO 250", "certificate expires in 5 days"},
		{"STARTTLS by name", func() config.HealthCheck { h := tls; h.ServerName = "mx.tandem.test"; return h }(), true, "SMTP 220", "certificate expires in 5 days"},
		{"STARTTLS, wrong name", func() config.HealthCheck { h := tls; h.ServerName = "mail.example.org"; return h }(),
			false, "STARTTLS: TLS: certificate is valid for mx.tandem.test, not mail.example.org", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := check(t, mustNew(t, tt.hc), addr, 2*time.Second)
			wantResult(t, res, tt.ok, tt.detail)
			if tt.warning == "" && res.Warning != "" || !strings.Contains(res.Warning, tt.warning) {
				t.Errorf("Warning %q, want %q", res.Warning, tt.warning)
			}
		})
	}
	// The MTA stops: the check fails (reset while exim winds down, then
	// refused).
	if err := d.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		res := check(t, mustNew(t, config.HealthCheck{Type: "smtp"}), addr, time.Second)
		if !res.OK && strings.Contains(res.Detail, "connection refused") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exim stopped 5s ago, and the check says %q", res.Detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
