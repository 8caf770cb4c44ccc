package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// LDAPScopes are the accepted values of health_check.scope.
var LDAPScopes = []string{"base", "one", "sub"}

// BindPassword reads an ldap check's password: the first line of
// PasswordFile without its line ending. It lives outside the config so
// that it is never printed, logged or hashed with it.
func (h *HealthCheck) BindPassword() (string, error) {
	b, err := os.ReadFile(h.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("cannot read the password: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s holds no password (its first line is empty)", h.PasswordFile)
	}
	return line, nil
}

// RootCAs reads CAFile into a pool for the TLS checks; nil, nil when it
// is not set, which means the system's roots.
func (h *HealthCheck) RootCAs() (*x509.CertPool, error) {
	if h.CAFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(h.CAFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read the CAs: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", h.CAFile)
	}
	return pool, nil
}

// ExpectedHeader splits ExpectHeader, "Name: regexp", into the header's
// name and the compiled regexp; re is nil for "Name" alone (the header
// need only be there) and name is "" when ExpectHeader is empty.
func (h *HealthCheck) ExpectedHeader() (name string, re *regexp.Regexp, err error) {
	if h.ExpectHeader == "" {
		return "", nil, nil
	}
	name, pattern, found := strings.Cut(h.ExpectHeader, ":")
	name = strings.TrimSpace(name)
	if !httpguts.ValidHeaderFieldName(name) {
		return "", nil, fmt.Errorf(`must be "Name: regexp" or "Name", with a valid header name (got %q)`, h.ExpectHeader)
	}
	if pattern = strings.TrimSpace(pattern); !found || pattern == "" {
		return name, nil, nil
	}
	re, err = regexp.Compile(pattern)
	if err != nil {
		return "", nil, fmt.Errorf("the value must be a valid regexp: %w", err)
	}
	return name, re, nil
}

// checkKeyTypes lists the check types each type-specific key belongs to,
// for keys whose type the older checks do not already police.
var checkKeyTypes = []struct {
	key   string
	set   func(*HealthCheck) bool
	types []string
}{
	{"host", func(h *HealthCheck) bool { return h.Host != "" }, []string{"http"}},
	{"expect_header", func(h *HealthCheck) bool { return h.ExpectHeader != "" }, []string{"http"}},
	{"expect", func(h *HealthCheck) bool { return h.Expect != "" }, []string{"smtp", "ldap"}},
	{"tls", func(h *HealthCheck) bool { return h.TLS }, []string{"tcp", "http", "ldap", "smtp"}},
	{"starttls", func(h *HealthCheck) bool { return h.StartTLS }, []string{"ldap", "smtp"}},
	{"base", func(h *HealthCheck) bool { return h.Base != "" }, []string{"ldap"}},
	{"filter", func(h *HealthCheck) bool { return h.Filter != "" }, []string{"ldap"}},
	{"scope", func(h *HealthCheck) bool { return h.Scope != "" }, []string{"ldap"}},
	{"min_entries", func(h *HealthCheck) bool { return h.MinEntries != 0 }, []string{"ldap"}},
	{"attribute", func(h *HealthCheck) bool { return h.Attribute != "" }, []string{"ldap"}},
	{"bind_dn", func(h *HealthCheck) bool { return h.BindDN != "" }, []string{"ldap"}},
	{"password_file", func(h *HealthCheck) bool { return h.PasswordFile != "" }, []string{"ldap"}},
}

// checkKeys validates the keys of the ldap and smtp checks, the TLS keys
// and http's header keys; healthCheck does the rest.
func (v *validator) checkKeys(k string, h *HealthCheck) {
	for _, ck := range checkKeyTypes {
		if ck.set(h) && !slices.Contains(ck.types, h.Type) && slices.Contains(HealthChecks, h.Type) {
			v.add(k+"."+ck.key, "only for %s checks (this one is %s)", strings.Join(ck.types, ", "), h.Type)
		}
	}
	v.checkTLS(k, h)
	if h.Host != "" && !httpguts.ValidHostHeader(h.Host) {
		v.add(k+".host", "must be a host name, optionally with a port (got %q)", h.Host)
	}
	if _, _, err := h.ExpectedHeader(); err != nil {
		v.add(k+".expect_header", "%v", err)
	}
	if _, err := regexp.Compile(h.Expect); err != nil {
		v.add(k+".expect", "must be a valid regexp: %v", err)
	}
	if h.Type == "ldap" {
		v.checkLDAP(k, h)
	}
}

func (v *validator) checkTLS(k string, h *HealthCheck) {
	if h.TLS && h.StartTLS {
		v.add(k+".starttls", "set either tls (TLS from the first byte) or starttls, not both")
	}
	if !h.TLS && !h.StartTLS {
		for _, key := range []string{"server_name", "ca_file", "cert_warn_days"} {
			if (key == "server_name" && h.ServerName != "") || (key == "ca_file" && h.CAFile != "") ||
				(key == "cert_warn_days" && h.CertWarnDays != 0) {
				v.add(k+"."+key, "needs tls: true or starttls: true")
			}
		}
		return
	}
	if h.ServerName != "" && strings.ContainsAny(h.ServerName, " \t/:@") {
		v.add(k+".server_name", "must be a host name or an IP address (got %q)", h.ServerName)
	}
	if _, err := h.RootCAs(); err != nil {
		v.add(k+".ca_file", "%v", err)
	}
	if h.CertWarnDays < 0 {
		v.add(k+".cert_warn_days", "must be ≥ 0; 0 never warns (got %d)", h.CertWarnDays)
	}
}

func (v *validator) checkLDAP(k string, h *HealthCheck) {
	if h.Base == "" {
		v.add(k+".base", "ldap check needs a base: the DN to search under, like dc=example,dc=org (the root DSE answers even when the directory is gone)")
	}
	if !slices.Contains(LDAPScopes, h.Scope) {
		v.add(k+".scope", "must be one of %s (got %q)", strings.Join(LDAPScopes, ", "), h.Scope)
	}
	if err := checkLDAPFilter(h.Filter); err != nil {
		v.add(k+".filter", "must be an LDAP filter in parentheses, like (objectClass=person): %v (got %q)", err, h.Filter)
	}
	if h.MinEntries < 1 {
		v.add(k+".min_entries", "must be at least 1 (got %d)", h.MinEntries)
	}
	switch {
	case h.BindDN != "" && h.PasswordFile == "":
		v.add(k+".password_file", "bind_dn needs password_file: the file holding its password")
	case h.BindDN == "" && h.PasswordFile != "":
		v.add(k+".bind_dn", "password_file needs bind_dn: the DN to bind as")
	case h.PasswordFile != "":
		if _, err := h.BindPassword(); err != nil {
			v.add(k+".password_file", "%v", err)
		}
	}
	if h.Expect != "" && h.Attribute == "" {
		v.add(k+".attribute", "expect needs attribute: the attribute whose values it matches")
	}
}

// checkLDAPFilter checks the shape of an RFC 4515 filter: one
// parenthesised item, nested parentheses balanced, none empty. The
// health check compiles it fully when the node starts; this catches
// what a typo makes of it at validate time without an LDAP library in
// the config package. (Parentheses inside values are written \28, \29.)
func checkLDAPFilter(f string) error {
	if !strings.HasPrefix(f, "(") || !strings.HasSuffix(f, ")") {
		return errors.New("it must start with ( and end with )")
	}
	depth := 0
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case '(':
			depth++
			if i+1 < len(f) && f[i+1] == ')' {
				return errors.New("empty ()")
			}
		case ')':
			depth--
			if depth < 0 || (depth == 0 && i != len(f)-1) {
				return errors.New("unbalanced parentheses")
			}
		}
	}
	if depth != 0 {
		return errors.New("unbalanced parentheses")
	}
	return nil
}
