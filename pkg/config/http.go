package config

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Keys of protocol: http clusters.
const (
	ProtocolHTTP      = "http"
	PersistenceCookie = "cookie"
	// AccessLogCombined is the Apache/nginx "combined" line; AccessLogJSON
	// one JSON object a line.
	AccessLogCombined = "combined"
	AccessLogJSON     = "json"
)

// Defaults of protocol: http clusters, applied by ApplyDefaults.
const (
	DefaultHTTPHeaderTimeout   = 10 * time.Second
	DefaultHTTPReadTimeout     = time.Minute
	DefaultHTTPIdleTimeout     = time.Minute
	DefaultHTTPConnectTimeout  = 3 * time.Second
	DefaultHTTPResponseTimeout = time.Minute
	DefaultHTTPMaxHeaderBytes  = 32 << 10
	DefaultCookieName          = "TANDEM"
	DefaultCookiePath          = "/"
	DefaultCookieSameSite      = "lax"
	DefaultCookieFallback      = 10 * time.Minute
	DefaultTLSMinVersion       = "1.2"
)

// TLS terminates TLS on the VIP of a protocol: http cluster: TLS 1.2 and
// 1.3 only, HTTP/2 and HTTP/1.1 offered to clients by ALPN.
type TLS struct {
	// CertFile and KeyFile are PEM files: the certificate (with its
	// chain) and its key; required. The node re-reads them on reload.
	CertFile string `mapstructure:"cert_file" json:"cert_file"`
	KeyFile  string `mapstructure:"key_file" json:"key_file"`
	// Certificates are further pairs; a client's SNI picks the first
	// certificate valid for the name, else CertFile's. [none]
	Certificates []CertPair `mapstructure:"certificates" json:"certificates,omitempty"`
	// MinVersion is 1.2 or 1.3 [1.2].
	MinVersion string `mapstructure:"min_version" json:"min_version"`
	// CertWarnDays shows a warning in status this many days before a
	// certificate expires; 0 never warns [14].
	CertWarnDays int `mapstructure:"cert_warn_days" json:"cert_warn_days"`
}

// CertPair is one more certificate of TLS.Certificates.
type CertPair struct {
	CertFile string `mapstructure:"cert_file" json:"cert_file"`
	KeyFile  string `mapstructure:"key_file" json:"key_file"`
}

// HTTP tunes a protocol: http cluster. Every key has a default; the
// block may be left out.
type HTTP struct {
	// RedirectPort, with tls, also listens on this port of the VIP in
	// plain HTTP and answers every request with a 308 to https:// [0: no
	// redirect].
	RedirectPort int `mapstructure:"redirect_port" json:"redirect_port,omitempty"`
	// TrustedProxies are CIDRs of proxies in front of the pair whose
	// X-Forwarded-For, X-Forwarded-Proto and Forwarded headers are kept
	// (and appended to); from anyone else they are dropped. [none]
	TrustedProxies []string `mapstructure:"trusted_proxies" json:"trusted_proxies,omitempty"`
	// HeaderTimeout bounds reading a request's headers (a slow client is
	// cut) [10s]; ReadTimeout reading its body [1m]; IdleTimeout a
	// keep-alive client connection between requests [1m];
	// ConnectTimeout a connect to a server [3s]; ResponseTimeout the wait
	// for a server's response headers [1m]. 0 disables a timeout.
	HeaderTimeout   time.Duration `mapstructure:"header_timeout" json:"header_timeout"`
	ReadTimeout     time.Duration `mapstructure:"read_timeout" json:"read_timeout"`
	IdleTimeout     time.Duration `mapstructure:"idle_timeout" json:"idle_timeout"`
	ConnectTimeout  time.Duration `mapstructure:"connect_timeout" json:"connect_timeout"`
	ResponseTimeout time.Duration `mapstructure:"response_timeout" json:"response_timeout"`
	// MaxHeaderBytes caps a request's headers; more is answered 431
	// [32768]. MaxBodyBytes caps its body; more is answered 413 [0:
	// unlimited].
	MaxHeaderBytes int   `mapstructure:"max_header_bytes" json:"max_header_bytes"`
	MaxBodyBytes   int64 `mapstructure:"max_body_bytes" json:"max_body_bytes"`
	// AccessLog is where a line per request goes: stdout, or a file
	// path [""]: none). AccessLogFormat is combined or json [combined].
	AccessLog       string `mapstructure:"access_log" json:"access_log,omitempty"`
	AccessLogFormat string `mapstructure:"access_log_format" json:"access_log_format"`
	// ServerTLS speaks TLS (1.2+, HTTP/1.1) to the servers [false]. Their
	// certificate must chain to ServerCAFile [the system's roots] and be
	// valid for ServerName [the server's IP address], unless
	// ServerSkipVerify [false].
	ServerTLS        bool   `mapstructure:"server_tls" json:"server_tls"`
	ServerCAFile     string `mapstructure:"server_ca_file" json:"server_ca_file,omitempty"`
	ServerName       string `mapstructure:"server_name" json:"server_name,omitempty"`
	ServerSkipVerify bool   `mapstructure:"server_skip_verify" json:"server_skip_verify"`
	// Rules route requests to named pools (servers[].pool), first match
	// wins; a request no rule matches goes to the default pool (the
	// servers without a pool).
	Rules []HTTPRule `mapstructure:"rules" json:"rules,omitempty"`
}

// HTTPRule matches requests on every condition it sets (at least one).
type HTTPRule struct {
	// Host is the request's host without port, case-insensitive; a
	// leading "*." matches any subdomain.
	Host string `mapstructure:"host" json:"host,omitempty"`
	// PathPrefix matches the start of the path; it starts with /.
	PathPrefix string `mapstructure:"path_prefix" json:"path_prefix,omitempty"`
	// Header is "Name: value" (an exact value) or "Name" (present).
	Header string `mapstructure:"header" json:"header,omitempty"`
	// Pool is the servers[].pool the request goes to; required.
	Pool string `mapstructure:"pool" json:"pool"`
}

// IsHTTP reports whether the cluster is an L7 HTTP cluster.
func (vc VirtualCluster) IsHTTP() bool { return vc.Protocol == ProtocolHTTP }

// transport is the transport protocol the cluster listens on.
func (vc VirtualCluster) transport() string {
	if vc.IsHTTP() {
		return "tcp"
	}
	return vc.Protocol
}

// httpDefaults fills in the defaults of an http cluster at k.
func (c *Config) httpDefaults(vc *VirtualCluster, k string) {
	if vc.HTTP == nil {
		vc.HTTP = &HTTP{}
	}
	h, hk := vc.HTTP, k+".http."
	set := func(d *time.Duration, key string, def time.Duration) {
		if *d == 0 && !c.written(hk+key) {
			*d = def
		}
	}
	set(&h.HeaderTimeout, "header_timeout", DefaultHTTPHeaderTimeout)
	set(&h.ReadTimeout, "read_timeout", DefaultHTTPReadTimeout)
	set(&h.IdleTimeout, "idle_timeout", DefaultHTTPIdleTimeout)
	set(&h.ConnectTimeout, "connect_timeout", DefaultHTTPConnectTimeout)
	set(&h.ResponseTimeout, "response_timeout", DefaultHTTPResponseTimeout)
	if h.MaxHeaderBytes == 0 && !c.written(hk+"max_header_bytes") {
		h.MaxHeaderBytes = DefaultHTTPMaxHeaderBytes
	}
	if h.AccessLogFormat == "" && !c.written(hk+"access_log_format") {
		h.AccessLogFormat = AccessLogCombined
	}
	if t := vc.TLS; t != nil {
		if t.MinVersion == "" && !c.written(k+".tls.min_version") {
			t.MinVersion = DefaultTLSMinVersion
		}
		if t.CertWarnDays == 0 && !c.written(k+".tls.cert_warn_days") {
			t.CertWarnDays = DefaultCertWarnDays
		}
	}
	if p := vc.Persistence; p != nil && p.Mode == PersistenceCookie {
		pk := k + ".persistence."
		if p.Name == "" && !c.written(pk+"name") {
			p.Name = DefaultCookieName
		}
		if p.Path == "" && !c.written(pk+"path") {
			p.Path = DefaultCookiePath
		}
		if p.SameSite == "" && !c.written(pk+"same_site") {
			p.SameSite = DefaultCookieSameSite
		}
		if p.HTTPOnly == nil {
			on := true
			p.HTTPOnly = &on
		}
		if p.Timeout == 0 && !c.written(pk+"timeout") {
			p.Timeout = DefaultCookieFallback
		}
		if p.Fallback == "" && !c.written(pk+"fallback") {
			p.Fallback = persistenceModeSourceIP
		}
	}
}

// httpCluster checks the keys of protocol: http, and that no other
// protocol uses them.
func (v *validator) httpCluster(i int, vc *VirtualCluster, vip netip.Addr, listeners map[listener]int) {
	k := "clusters[" + strconv.Itoa(i) + "]"
	if !vc.IsHTTP() {
		if vc.TLS != nil {
			v.add(k+".tls", "only for protocol: http clusters (this one is %q)", vc.Protocol)
		}
		if vc.HTTP != nil {
			v.add(k+".http", "only for protocol: http clusters (this one is %q)", vc.Protocol)
		}
		if p := vc.Persistence; p != nil && p.Mode == PersistenceCookie {
			v.add(k+".persistence.mode", "cookie is only for protocol: http clusters (this one is %q)", vc.Protocol)
		}
		for i, s := range vc.Servers {
			if s.Pool != "" {
				v.add(k+".servers["+strconv.Itoa(i)+"].pool", "only for protocol: http clusters")
			}
		}
		return
	}
	if vc.IsNAT() {
		v.add(k+".mode", "protocol: http is served by the proxy; it cannot be mode: nat")
	}
	for i, s := range vc.Servers {
		if s.SendProxy {
			v.add(k+".servers["+strconv.Itoa(i)+"].send_proxy", "not for protocol: http (the client's address goes in X-Forwarded-For and Forwarded)")
		}
	}
	if vc.TLS != nil {
		v.tlsOffload(k+".tls", vc.TLS)
	}
	if p := vc.Persistence; p != nil && p.Mode == PersistenceCookie {
		v.cookie(k+".persistence", p)
	}
	if vc.HTTP != nil {
		v.httpOptions(i, vc, vip, listeners)
	}
}

func (v *validator) tlsOffload(k string, t *TLS) {
	pairs := append([]CertPair{{t.CertFile, t.KeyFile}}, t.Certificates...)
	for i, p := range pairs {
		pk := k
		if i > 0 {
			pk = k + ".certificates[" + strconv.Itoa(i-1) + "]"
		}
		switch {
		case p.CertFile == "":
			v.add(pk+".cert_file", "required: a PEM file of the certificate and its chain")
		case p.KeyFile == "":
			v.add(pk+".key_file", "required: a PEM file of the certificate's key")
		default:
			if _, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile); err != nil {
				v.add(pk+".cert_file", "cannot load the certificate and key: %v", err)
			}
		}
	}
	if t.MinVersion != "1.2" && t.MinVersion != "1.3" {
		v.add(k+".min_version", "must be 1.2 or 1.3 (got %q)", t.MinVersion)
	}
	if t.CertWarnDays < 0 {
		v.add(k+".cert_warn_days", "must not be negative (got %d)", t.CertWarnDays)
	}
}

func (v *validator) cookie(k string, p *Persistence) {
	if p.Name == "" || strings.ContainsFunc(p.Name, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?={}`, r)
	}) {
		v.add(k+".name", "must be a cookie name: letters, digits and !#$%%&'*+-.^_`|~ (got %q)", p.Name)
	}
	if p.MaxAge < 0 {
		v.add(k+".max_age", "must not be negative (got %s)", p.MaxAge)
	}
	if !strings.HasPrefix(p.Path, "/") {
		v.add(k+".path", "must start with / (got %q)", p.Path)
	}
	if p.Fallback != persistenceModeSourceIP && p.Fallback != "none" {
		v.add(k+".fallback", "must be source_ip or none (got %q)", p.Fallback)
	}
	switch p.SameSite {
	case "lax", "strict":
	case "none":
		if !p.Secure {
			v.add(k+".same_site", "none needs secure: true (browsers refuse it otherwise)")
		}
	default:
		v.add(k+".same_site", "must be lax, strict or none (got %q)", p.SameSite)
	}
}

func (v *validator) httpOptions(i int, vc *VirtualCluster, vip netip.Addr, listeners map[listener]int) {
	k := "clusters[" + strconv.Itoa(i) + "]"
	h, hk := vc.HTTP, k+".http"
	if h.RedirectPort != 0 {
		switch {
		case vc.TLS == nil:
			v.add(hk+".redirect_port", "needs tls: the redirect goes to https on port %d", vc.Port)
		case h.RedirectPort < minPort || h.RedirectPort > maxPort:
			v.add(hk+".redirect_port", "must be %d..%d (got %d)", minPort, maxPort, h.RedirectPort)
		case h.RedirectPort == vc.Port:
			v.add(hk+".redirect_port", "must differ from port %d", vc.Port)
		case vip.IsValid():
			l := listener{vip, h.RedirectPort, "tcp"}
			if j, dup := listeners[l]; dup {
				v.add(hk+".redirect_port", "%s port %d/tcp is clusters[%d]'s (%s)", vc.VIP, h.RedirectPort, j, v.c.Clusters[j].Name)
			} else {
				listeners[l] = i
			}
		}
	}
	for j, a := range h.TrustedProxies {
		if _, err := netip.ParsePrefix(a); err != nil {
			v.add(hk+".trusted_proxies["+strconv.Itoa(j)+"]", "must be a CIDR prefix, like 198.18.0.0/15 (got %q)", a)
		}
	}
	for key, d := range map[string]time.Duration{"header_timeout": h.HeaderTimeout, "read_timeout": h.ReadTimeout,
		"idle_timeout": h.IdleTimeout, "connect_timeout": h.ConnectTimeout, "response_timeout": h.ResponseTimeout} {
		if d < 0 {
			v.add(hk+"."+key, "must not be negative (got %s)", d)
		}
	}
	if h.MaxHeaderBytes < 0 {
		v.add(hk+".max_header_bytes", "must not be negative (got %d)", h.MaxHeaderBytes)
	}
	if h.MaxBodyBytes < 0 {
		v.add(hk+".max_body_bytes", "must not be negative; 0 means unlimited (got %d)", h.MaxBodyBytes)
	}
	if h.AccessLogFormat != AccessLogCombined && h.AccessLogFormat != AccessLogJSON {
		v.add(hk+".access_log_format", "must be combined or json (got %q)", h.AccessLogFormat)
	}
	if !h.ServerTLS && (h.ServerCAFile != "" || h.ServerName != "" || h.ServerSkipVerify) {
		v.add(hk+".server_tls", "server_ca_file, server_name and server_skip_verify need server_tls: true")
	}
	if h.ServerCAFile != "" {
		if b, err := os.ReadFile(h.ServerCAFile); err != nil {
			v.add(hk+".server_ca_file", "cannot read: %v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(b) {
			v.add(hk+".server_ca_file", "no PEM certificate in %s", h.ServerCAFile)
		}
	}
	pools := map[string]bool{}
	for _, s := range vc.Servers {
		pools[s.Pool] = true
	}
	if len(vc.Servers) > 0 && !pools[""] {
		v.add(k+".servers", "the default pool is empty: at least one server needs no pool")
	}
	for j, r := range h.Rules {
		rk := hk + ".rules[" + strconv.Itoa(j) + "]"
		if r.Host == "" && r.PathPrefix == "" && r.Header == "" {
			v.add(rk, "needs host, path_prefix or header")
		}
		if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
			v.add(rk+".path_prefix", "must start with / (got %q)", r.PathPrefix)
		}
		if r.Header != "" {
			name, _, _ := strings.Cut(r.Header, ":")
			if name = strings.TrimSpace(name); name == "" || strings.ContainsAny(name, " \t") {
				v.add(rk+".header", `must be "Name: value" or "Name" (got %q)`, r.Header)
			} else if http.CanonicalHeaderKey(name) == "" {
				v.add(rk+".header", "bad header name %q", name)
			}
		}
		switch {
		case r.Pool == "":
			v.add(rk+".pool", "required: the servers[].pool requests go to")
		case !pools[r.Pool]:
			v.add(rk+".pool", "no server has pool %q", r.Pool)
		}
	}
}
