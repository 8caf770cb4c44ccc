package healthcheck

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/tandem-lb/tandem/pkg/config"
)

// slapd is a real OpenLDAP server run by a test on loopback ports, with
// an mdb database in a temporary folder.
type slapd struct {
	addr, ldaps netip.AddrPort
	passwordPW  string // a file holding the admin's password
	wrongPW     string // a file holding another
}

const (
	ldapSuffix = "dc=example,dc=org"
	ldapPeople = "ou=people," + ldapSuffix
	ldapAdmin  = "cn=admin," + ldapSuffix
)

// startSlapd runs slapd with cert for StartTLS and LDAPS; anyone may
// read, the admin may write.
func startSlapd(t *testing.T, cert leaf, ca *testCA) *slapd {
	t.Helper()
	needBinary(t, "/usr/sbin/slapd", "slapd")
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile %[1]s/slapd.pid
TLSCACertificateFile %[2]s
TLSCertificateFile %[3]s
TLSCertificateKeyFile %[4]s
database mdb
maxsize 10485760
suffix "%[5]s"
rootdn "%[6]s"
rootpw admin-pw
directory %[1]s/db
access to * by * read
`, dir, ca.file, cert.certFile, cert.keyFile, ldapSuffix, ldapAdmin)
	confFile := filepath.Join(dir, "slapd.conf")
	s := &slapd{addr: freePort(t), ldaps: freePort(t),
		passwordPW: filepath.Join(dir, "admin.pw"), wrongPW: filepath.Join(dir, "wrong.pw")}
	for f, src := range map[string]string{confFile: conf, s.passwordPW: "admin-pw\n", s.wrongPW: "guess\n"} {
		if err := os.WriteFile(f, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	urls := fmt.Sprintf("ldap://%s/ ldaps://%s/", s.addr, s.ldaps)
	d := startDaemon(t, filepath.Join(dir, "slapd.log"), "/usr/sbin/slapd", "-f", confFile, "-h", urls, "-d", "0")
	d.waitListening(t, s.addr)
	d.waitListening(t, s.ldaps)
	return s
}

// admin binds as the directory's admin.
func (s *slapd) admin(t *testing.T) *ldap.Conn {
	t.Helper()
	l, err := ldap.DialURL("ldap://" + s.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := l.Bind(ldapAdmin, "admin-pw"); err != nil {
		t.Fatal(err)
	}
	return l
}

var ldapPeopleEntries = []string{"uid=alice," + ldapPeople, "uid=bob," + ldapPeople}

// populate adds the suffix, ou=people and two people, those missing.
func (s *slapd) populate(t *testing.T) {
	t.Helper()
	l := s.admin(t)
	add := func(dn string, attrs map[string][]string) {
		req := ldap.NewAddRequest(dn, nil)
		for k, v := range attrs {
			req.Attribute(k, v)
		}
		if err := l.Add(req); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists) {
			t.Fatalf("add %s: %v", dn, err)
		}
	}
	add(ldapSuffix, map[string][]string{"objectClass": {"dcObject", "organization"}, "dc": {"example"}, "o": {"Example"}})
	add(ldapPeople, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"people"}})
	for _, dn := range ldapPeopleEntries {
		uid := strings.TrimPrefix(strings.Split(dn, ",")[0], "uid=")
		add(dn, map[string][]string{"objectClass": {"inetOrgPerson"}, "uid": {uid}, "cn": {uid}, "sn": {uid},
			"mail": {uid + "@example.org"}})
	}
}

// empty deletes the people, as a botched import or a wiped database
// would: the server still answers binds and searches.
func (s *slapd) empty(t *testing.T) {
	t.Helper()
	l := s.admin(t)
	for _, dn := range ldapPeopleEntries {
		if err := l.Del(ldap.NewDelRequest(dn, nil)); err != nil {
			t.Fatalf("delete %s: %v", dn, err)
		}
	}
}

func TestLDAPNew(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("x\n"), 0o600)
	for _, tt := range []struct {
		hc   config.HealthCheck
		want string
	}{
		{config.HealthCheck{Type: "ldap"}, "needs a base"},
		{config.HealthCheck{Type: "ldap", Base: ldapSuffix, Filter: "(cn=a"}, `filter "(cn=a"`},
		{config.HealthCheck{Type: "ldap", Base: ldapSuffix, Scope: "tree"}, "scope must be base, one or sub"},
		{config.HealthCheck{Type: "ldap", Base: ldapSuffix, BindDN: ldapAdmin, PasswordFile: pw + ".missing"}, "password_file: cannot read the password"},
		{config.HealthCheck{Type: "ldap", Base: ldapSuffix, Attribute: "mail", Expect: "("}, "expect: error parsing regexp"},
	} {
		if _, err := New(tt.hc); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tt.hc, err, tt.want)
		}
	}
	if _, err := New(config.HealthCheck{Type: "ldap", Base: ldapSuffix, BindDN: ldapAdmin, PasswordFile: pw}); err != nil {
		t.Errorf("a valid ldap check: %v", err)
	}
}

// TestLDAPSlapd runs the check against a real slapd: a populated
// directory passes; wrong credentials, a search that finds too few
// entries, an emptied directory and a deleted base fail.
func TestLDAPSlapd(t *testing.T) {
	ca := newTestCA(t)
	s := startSlapd(t, ca.valid(t, 5*day, "127.0.0.1"), ca)
	s.populate(t)

	people := config.HealthCheck{Type: "ldap", Base: ldapPeople, Filter: "(objectClass=inetOrgPerson)", Scope: "one", MinEntries: 2}
	with := func(f func(*config.HealthCheck)) config.HealthCheck { h := people; f(&h); return h }
	tls := func(h *config.HealthCheck) { h.CAFile, h.CertWarnDays = ca.file, 14 }
	tests := []struct {
		name    string
		hc      config.HealthCheck
		addr    netip.AddrPort
		ok      bool
		detail  string
		warning string
	}{
		{"anonymous search", people, s.addr, true, "LDAP search found 2 entries in", ""},
		{"default filter and scope", config.HealthCheck{Type: "ldap", Base: ldapSuffix}, s.addr, true, "LDAP search found 1 entry", ""},
		{"too few entries", with(func(h *config.HealthCheck) { h.MinEntries = 3 }), s.addr, false,
			"search ou=people,dc=example,dc=org (objectClass=inetOrgPerson) found 2 entries, want at least 3", ""},
		{"attribute matches", with(func(h *config.HealthCheck) { h.Attribute, h.Expect = "mail", "^bob@" }), s.addr, true, "found 2 entries", ""},
		{"attribute does not match", with(func(h *config.HealthCheck) { h.Attribute, h.Expect = "mail", "@example\\.net$" }), s.addr, false,
			`@example.org" did not match @example\.net$`, ""},
		{"attribute missing", with(func(h *config.HealthCheck) { h.Attribute = "telephoneNumber" }), s.addr, false,
			"no entry found has attribute telephoneNumber", ""},
		{"bind", with(func(h *config.HealthCheck) { h.BindDN, h.PasswordFile = ldapAdmin, s.passwordPW }), s.addr, true, "found 2 entries", ""},
		{"wrong password", with(func(h *config.HealthCheck) { h.BindDN, h.PasswordFile = ldapAdmin, s.wrongPW }), s.addr, false,
			"bind as cn=admin,dc=example,dc=org: Invalid Credentials (49)", ""},
		{"StartTLS", with(func(h *config.HealthCheck) { tls(h); h.StartTLS = true }), s.addr, true,
			"found 2 entries", "certificate expires in 5 days"},
		{"StartTLS and bind", with(func(h *config.HealthCheck) {
			tls(h)
			h.StartTLS, h.BindDN, h.PasswordFile = true, ldapAdmin, s.passwordPW
		}), s.addr, true, "found 2 entries", "certificate expires in 5 days"},
		{"LDAPS", with(func(h *config.HealthCheck) { tls(h); h.TLS = true }), s.ldaps, true, "found 2 entries", "certificate expires in 5 days"},
		{"StartTLS, name not in the certificate", with(func(h *config.HealthCheck) { tls(h); h.StartTLS, h.ServerName = true, "ldap.example.org" }),
			s.addr, false, "StartTLS: TLS: certificate is not valid for any names, but wanted to match ldap.example.org", ""},
		{"LDAPS, CA unknown", with(func(h *config.HealthCheck) { h.TLS = true }), s.ldaps, false, "TLS: certificate signed by unknown authority", ""},
		{"plain LDAP to the LDAPS port", people, s.ldaps, false, "search ou=people,dc=example,dc=org: ", ""},
		{"nothing listening", people, closedPort(t), false, "connection refused", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := check(t, mustNew(t, tt.hc), tt.addr, time.Second)
			wantResult(t, res, tt.ok, tt.detail)
			if tt.warning == "" && res.Warning != "" || !strings.Contains(res.Warning, tt.warning) {
				t.Errorf("Warning %q, want %q", res.Warning, tt.warning)
			}
		})
	}

	// The password is rotated in its file: picked up without a reload;
	// a file that goes missing keeps the last good password, with a
	// warning.
	rotated := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(rotated, []byte("admin-pw\n"), 0o600)
	c := mustNew(t, with(func(h *config.HealthCheck) { h.BindDN, h.PasswordFile = ldapAdmin, rotated }))
	wantResult(t, check(t, c, s.addr, time.Second), true, "found 2 entries")
	os.WriteFile(rotated, []byte("a-new-one\n"), 0o600)
	wantResult(t, check(t, c, s.addr, time.Second), false, "Invalid Credentials (49)")
	os.WriteFile(rotated, []byte("admin-pw\n"), 0o600)
	wantResult(t, check(t, c, s.addr, time.Second), true, "found 2 entries")
	os.Remove(rotated)
	res := check(t, c, s.addr, time.Second)
	wantResult(t, res, true, "found 2 entries")
	if !strings.Contains(res.Warning, "password_file: cannot read the password: open "+rotated+": no such file or directory; using the password read before") {
		t.Errorf("missing password file: warning %q", res.Warning)
	}

	// The directory is emptied: slapd still binds and answers, the
	// check fails.
	s.empty(t)
	bind := with(func(h *config.HealthCheck) { h.BindDN, h.PasswordFile, h.MinEntries = ldapAdmin, s.passwordPW, 1 })
	wantResult(t, check(t, mustNew(t, bind), s.addr, time.Second), false,
		"search ou=people,dc=example,dc=org (objectClass=inetOrgPerson) found 0 entries, want at least 1")
	if err := s.admin(t).Del(ldap.NewDelRequest(ldapPeople, nil)); err != nil {
		t.Fatal(err)
	}
	wantResult(t, check(t, mustNew(t, bind), s.addr, time.Second), false,
		"search ou=people,dc=example,dc=org: No Such Object (32)")
}

// TestLDAPSilentServer: a server that accepts and never answers costs
// the probe its timeout, and go-ldap's goroutines end with the probe.
func TestLDAPSilentServer(t *testing.T) {
	ln := listenTCP(t)
	serveTCP(t, ln, func(c net.Conn) { time.Sleep(time.Second) })
	before := runtime.NumGoroutine()
	c := mustNew(t, config.HealthCheck{Type: "ldap", Base: ldapSuffix})
	start := time.Now()
	wantResult(t, check(t, c, addrOf(t, ln.Addr()), 200*time.Millisecond), false, "timeout after")
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("probe took %v, past its 200ms timeout", d)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before+1 { // +1: the silent server's handler
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left running after the probe (%d before)", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLDAPEmptiedTakenOut is issue 14's figure for the checks: a slapd
// whose directory is emptied is taken out within interval × fall (plus
// the one probe that may be under way), and comes back after rise
// passes once the entries return. Several trials; the spread is logged.
func TestLDAPEmptiedTakenOut(t *testing.T) {
	ca := newTestCA(t)
	s := startSlapd(t, ca.valid(t, 90*day, "127.0.0.1"), ca)
	s.populate(t)
	hc := config.HealthCheck{Type: "ldap", Base: ldapPeople, Filter: "(objectClass=inetOrgPerson)", Scope: "one",
		MinEntries: 1, BindDN: ldapAdmin, PasswordFile: s.passwordPW,
		Interval: 200 * time.Millisecond, Timeout: 150 * time.Millisecond, Rise: 2, Fall: 2}
	changes := collect{ch: make(chan Change, 8)}
	m := NewMonitor(mustNew(t, hc), hc, []Target{{Cluster: "ldap", Server: "ldap1", Addr: s.addr}}, changes.on, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if c := changes.next(t); !c.Initial || !c.Healthy {
		t.Fatalf("first change %+v, want initially up", c)
	}

	const trials = 5
	bound := time.Duration(hc.Fall)*hc.Interval + hc.Timeout
	var took []time.Duration
	for i := range trials {
		// Empty at a random point of the probe period.
		time.Sleep(time.Duration(37*i) * time.Millisecond)
		emptied := time.Now()
		s.empty(t)
		c := changes.next(t)
		d := time.Since(emptied)
		if c.Healthy || c.Initial {
			t.Fatalf("trial %d: change %+v, want down", i, c)
		}
		if !strings.Contains(c.Result.Detail, "found 0 entries") {
			t.Errorf("trial %d: down for %q", i, c.Result.Detail)
		}
		if d > bound {
			t.Errorf("trial %d: taken out %v after the directory was emptied, want within interval × fall (+ one probe) = %v", i, d, bound)
		}
		took = append(took, d)
		s.populate(t)
		if c := changes.next(t); !c.Healthy {
			t.Fatalf("trial %d: change %+v after repopulating, want up", i, c)
		}
	}
	slices.Sort(took)
	t.Logf("emptied → taken out, interval %v × fall %d: min %v, median %v, max %v over %d trials",
		hc.Interval, hc.Fall, took[0].Round(time.Millisecond), took[len(took)/2].Round(time.Millisecond),
		took[len(took)-1].Round(time.Millisecond), trials)
}
