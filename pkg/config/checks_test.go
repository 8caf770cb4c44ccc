package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckKeysProblems breaks the ldap, smtp, TLS and http header keys
// one at a time (base's http check is on lines 20-22) and asserts the
// line printed for each.
func TestCheckKeysProblems(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pw := write("pw", "s3cret\n")
	emptyPW := write("empty", "\nsecond line\n")
	notPEM := write("ca.pem", "not a certificate\n")
	check := func(lines ...string) string {
		return edit(t, "type: http\n      path: /", strings.Join(lines, "\n      "))
	}
	ldap := func(lines ...string) string {
		return check(append([]string{"type: ldap", "base: dc=example,dc=org"}, lines...)...)
	}
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"ldap, anonymous", ldap(), nil},
		{"ldap, all keys", ldap("scope: one", "filter: (&(objectClass=person)(uid=*))", "min_entries: 3",
			"attribute: mail", "expect: '@example\\.org$'", "bind_dn: cn=check,dc=example,dc=org", "password_file: "+pw,
			"starttls: true", "server_name: ldap.example.org", "cert_warn_days: 30"), nil},
		{"ldap without base", check("type: ldap"),
			[]string{"FILE:20: clusters[0].health_check.base: ldap check needs a base: the DN to search under, like dc=example,dc=org (the root DSE answers even when the directory is gone)"}},
		{"ldap scope", ldap("scope: tree"),
			[]string{`FILE:23: clusters[0].health_check.scope: must be one of base, one, sub (got "tree")`}},
		{"ldap filter without parentheses", ldap("filter: objectClass=*"),
			[]string{`FILE:23: clusters[0].health_check.filter: must be an LDAP filter in parentheses, like (objectClass=person): it must start with ( and end with ) (got "objectClass=*")`}},
		{"ldap filter unbalanced", ldap("filter: (&(a=b)(c=d)"),
			[]string{`FILE:23: clusters[0].health_check.filter: must be an LDAP filter in parentheses, like (objectClass=person): unbalanced parentheses (got "(&(a=b)(c=d)")`}},
		{"ldap filter of two", ldap("filter: (a=b)(c=d)"),
			[]string{`FILE:23: clusters[0].health_check.filter: must be an LDAP filter in parentheses, like (objectClass=person): unbalanced parentheses (got "(a=b)(c=d)")`}},
		{"ldap min_entries", ldap("min_entries: 0"),
			[]string{"FILE:23: clusters[0].health_check.min_entries: must be at least 1 (got 0)"}},
		{"bind_dn without password", ldap("bind_dn: cn=check,dc=example,dc=org"),
			[]string{"FILE:20: clusters[0].health_check.password_file: bind_dn needs password_file: the file holding its password"}},
		{"password without bind_dn", ldap("password_file: " + pw),
			[]string{"FILE:20: clusters[0].health_check.bind_dn: password_file needs bind_dn: the DN to bind as"}},
		{"password file missing", ldap("bind_dn: cn=x", "password_file: /nonexistent/pw"),
			[]string{"FILE:24: clusters[0].health_check.password_file: cannot read the password: open /nonexistent/pw: no such file or directory"}},
		{"password file empty", ldap("bind_dn: cn=x", "password_file: "+emptyPW),
			[]string{"FILE:24: clusters[0].health_check.password_file: DIR/empty holds no password (its first line is empty)"}},
		{"expect without attribute", ldap("expect: ok"),
			[]string{"FILE:20: clusters[0].health_check.attribute: expect needs attribute: the attribute whose values it matches"}},
		{"smtp", check("type: smtp", "starttls: true", `expect: "(?m)^PIPELINING$"`), nil},
		{"smtp expect regexp", check("type: smtp", `expect: "("`),
			[]string{"FILE:22: clusters[0].health_check.expect: must be a valid regexp: error parsing regexp: missing closing ): `(`"}},
		{"tls and starttls", check("type: smtp", "tls: true", "starttls: true"),
			[]string{"FILE:23: clusters[0].health_check.starttls: set either tls (TLS from the first byte) or starttls, not both"}},
		{"starttls on tcp", check("type: tcp", "starttls: true"),
			[]string{"FILE:22: clusters[0].health_check.starttls: only for ldap, smtp checks (this one is tcp)"}},
		{"tls on dns", check("type: dns", "query: a.example", "tls: true"),
			[]string{"FILE:23: clusters[0].health_check.tls: only for tcp, http, ldap, smtp checks (this one is dns)"}},
		{"ca_file without tls", check("type: tcp", "ca_file: "+notPEM),
			[]string{"FILE:22: clusters[0].health_check.ca_file: needs tls: true or starttls: true"}},
		{"ca_file not PEM", check("type: tcp", "tls: true", "ca_file: "+notPEM),
			[]string{"FILE:23: clusters[0].health_check.ca_file: DIR/ca.pem holds no PEM certificate"}},
		{"cert_warn_days negative", check("type: tcp", "tls: true", "cert_warn_days: -1"),
			[]string{"FILE:23: clusters[0].health_check.cert_warn_days: must be ≥ 0; 0 never warns (got -1)"}},
		{"server_name with a port", check("type: tcp", "tls: true", "server_name: a.example:443"),
			[]string{`FILE:23: clusters[0].health_check.server_name: must be a host name or an IP address (got "a.example:443")`}},
		{"http host and header", check("type: http", "path: /", "host: www.example.org", "expect_header: \"X-Backend: ^app[0-9]+$\"", "tls: true"), nil},
		{"http header name", check("type: http", "path: /", `expect_header: "X Backend: a"`),
			[]string{`FILE:23: clusters[0].health_check.expect_header: must be "Name: regexp" or "Name", with a valid header name (got "X Backend: a")`}},
		{"http header regexp", check("type: http", "path: /", `expect_header: "X-Backend: ("`),
			[]string{"FILE:23: clusters[0].health_check.expect_header: the value must be a valid regexp: error parsing regexp: missing closing ): `(`"}},
		{"http host", check("type: http", "path: /", `host: "a b"`),
			[]string{`FILE:23: clusters[0].health_check.host: must be a host name, optionally with a port (got "a b")`}},
		{"host on tcp", check("type: tcp", "host: www.example.org"),
			[]string{"FILE:22: clusters[0].health_check.host: only for http checks (this one is tcp)"}},
		{"base on http", check("type: http", "path: /", "base: dc=example,dc=org"),
			[]string{"FILE:23: clusters[0].health_check.base: only for ldap checks (this one is http)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(t, tt.src)
			for i := range got {
				got[i] = strings.ReplaceAll(got[i], dir, "DIR")
			}
			assertProblems(t, got, tt.want)
		})
	}
}

// TestCheckDefaults: ldap's search defaults, and cert_warn_days only with
// TLS; a written zero stays zero.
func TestCheckDefaults(t *testing.T) {
	c := mustLoad(t, edit(t, "type: http\n      path: /", "type: ldap\n      base: dc=example,dc=org\n      starttls: true"))
	h := c.Clusters[0].HealthCheck
	if h.Filter != "(objectClass=*)" || h.Scope != "sub" || h.MinEntries != 1 || h.CertWarnDays != 14 {
		t.Errorf("ldap defaults: filter %q scope %q min_entries %d cert_warn_days %d", h.Filter, h.Scope, h.MinEntries, h.CertWarnDays)
	}
	c = mustLoad(t, edit(t, "type: http\n      path: /", "type: tcp\n      tls: true\n      cert_warn_days: 0"))
	if h := c.Clusters[0].HealthCheck; h.CertWarnDays != 0 {
		t.Errorf("cert_warn_days: 0 became %d", h.CertWarnDays)
	}
	c = mustLoad(t, edit(t, "type: http\n      path: /", "type: tcp"))
	if h := c.Clusters[0].HealthCheck; h.CertWarnDays != 0 || h.Filter != "" || h.MinEntries != 0 {
		t.Errorf("a plain tcp check got TLS or ldap defaults: %+v", h)
	}
}

// TestBindPassword: the first line, without its ending; never in the
// config's JSON nor its hash, and a readable file is warned of.
func TestBindPassword(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret pass\r\nignored\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := edit(t, "type: http\n      path: /", "type: ldap\n      base: dc=example,dc=org\n      bind_dn: cn=check\n      password_file: "+pw)
	c := mustLoad(t, src)
	got, err := c.Clusters[0].HealthCheck.BindPassword()
	if err != nil || got != "s3cret pass" {
		t.Fatalf("BindPassword = %q, %v", got, err)
	}
	h1 := c.Hash()
	if err := os.WriteFile(pw, []byte("another\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if h2 := mustLoad(t, src).Hash(); h2 != h1 {
		t.Error("changing the password changed the config hash")
	}
	warned := false
	for _, w := range c.Warnings() {
		if strings.Contains(w, "health_check.password_file "+pw+": others may read the password") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning for a world-readable password file: %q", c.Warnings())
	}
}
