// Package config is the one place Tandem reads its configuration. It owns
// the schema of CONTRACT.md as typed structs, the defaults, and Validate,
// which reports every problem with its file, line and key path. viper is
// used here and nowhere else.
package config

import (
	"time"
)

// Config is a whole node configuration: the node itself, the pair's
// membership, the failover group and the virtual clusters.
type Config struct {
	Node     Node             `mapstructure:"node" json:"node"`
	Cluster  Cluster          `mapstructure:"cluster" json:"cluster"`
	Failover Failover         `mapstructure:"failover" json:"failover"`
	Clusters []VirtualCluster `mapstructure:"clusters" json:"clusters"`
	// Outbound is the forwarding policy for connections the servers open
	// themselves when nat clusters return through the pair (return:
	// gateway): nil forwards nothing but the replies.
	Outbound *Outbound `mapstructure:"outbound" json:"outbound,omitempty"`

	// File is the path the config was read from ("" when built in code).
	File string `mapstructure:"-" json:"-"`
	// lines maps key paths ("clusters[0].servers[1].address") to the line
	// they were found on, so Validate can point at them.
	lines map[string]int
	// env maps the key paths that were set from the environment to the
	// variable that set them ("cluster.secret" → "TANDEM_CLUSTER_SECRET").
	env map[string]string
}

// Node holds the settings of this box only.
type Node struct {
	// Name is unique in the pair and appears in adverts, status and logs.
	Name string `mapstructure:"name" json:"name"`
	// APISocket is the unix socket of the control API (mode 0600, or 0660
	// with APIGroup).
	APISocket string `mapstructure:"api_socket" json:"api_socket"`
	// APIGroup, a group name or numeric gid, may also use the control
	// API: the socket is made mode 0660 and owned by that group, and a
	// client whose gid or supplementary groups include it is let in.
	// Empty lets in only root and the daemon's own user. [""]
	APIGroup string `mapstructure:"api_group" json:"api_group"`
	// APIAdminGroup, a group name or numeric gid, may also act on the
	// control API (switchover, server, reload, persistence flush);
	// APIGroup's members may only read (status, events, persistence
	// list). Root and the daemon's own user may always do both. [""]
	APIAdminGroup string `mapstructure:"api_admin_group" json:"api_admin_group"`
	// MetricsListen is the address of the Prometheus endpoint; "" disables
	// it. With no host (":9110") it binds 127.0.0.1 only.
	MetricsListen string `mapstructure:"metrics_listen" json:"metrics_listen"`
	// LogLevel is one of debug, info, warn, error.
	LogLevel string `mapstructure:"log_level" json:"log_level"`
	// WebListen is the address of the browser console (host:port); ""
	// disables it. A non-loopback address needs TLS (WebCertFile and
	// WebKeyFile) or WebInsecureHTTP. [""]
	WebListen string `mapstructure:"web_listen" json:"web_listen"`
	// WebUsersFile lists the console's users, one "name:bcrypt-hash:role"
	// a line (role admin or viewer), as `tandem web passwd` writes it;
	// required with WebListen. It is read again when it changes. [""]
	WebUsersFile string `mapstructure:"web_users_file" json:"web_users_file"`
	// WebCertFile and WebKeyFile, PEM, serve the console over HTTPS;
	// both or neither. [""]
	WebCertFile string `mapstructure:"web_cert_file" json:"web_cert_file"`
	WebKeyFile  string `mapstructure:"web_key_file" json:"web_key_file"`
	// WebInsecureHTTP must be true to serve the console without TLS on an
	// address other than loopback: passwords and session cookies would
	// cross the network in clear. [false]
	WebInsecureHTTP bool `mapstructure:"web_insecure_http" json:"web_insecure_http"`
	// RTPriority runs the node's threads with real-time round-robin
	// scheduling at this priority (1..99), so heartbeats are sent and read
	// on time even when the box's CPUs are saturated, as keepalived does
	// for VRRP; 0 runs at normal priority (nice -15) instead. [10]
	RTPriority int `mapstructure:"rt_priority" json:"rt_priority"`
}

// Cluster is the pair's membership: where this node listens for its peer
// and how their traffic is authenticated.
type Cluster struct {
	// Bind is this node's address:port for memberlist (UDP and TCP).
	Bind string `mapstructure:"bind" json:"bind"`
	// Peers lists the other box's address:port.
	Peers []string `mapstructure:"peers" json:"peers"`
	// Secret is the primary key, base64 of 16, 24 or 32 bytes: the pair
	// sends with it and accepts it. SecretFile holds it instead, or
	// several keys one a line (blank lines and # comments ignored): the
	// first is the primary, the others are only accepted.
	Secret     string `mapstructure:"secret" json:"-"`
	SecretFile string `mapstructure:"secret_file" json:"secret_file"`
	// AcceptSecrets are further base64 keys accepted on receive and never
	// used to send, for a rotation without a restart: a reload that
	// changes only the keys applies them live. [[]]
	AcceptSecrets []string `mapstructure:"accept_secrets" json:"-"`
	// Insecure must be true to run without a key.
	Insecure bool `mapstructure:"insecure" json:"insecure"`
	// Label is stamped on every memberlist packet; packets of another
	// label are dropped, so two pairs on one LAN never mix. [tandem]
	Label string `mapstructure:"label" json:"label"`
	// HeartbeatPaths are more paths for the adverts, such as a dedicated
	// cable between the boxes: the pair stays together when one path
	// breaks, and a box that loses its service link tells its peer at
	// once over the other. Each bind uses cluster.bind's port.
	HeartbeatPaths []HeartbeatPath `mapstructure:"heartbeat_paths" json:"heartbeat_paths"`
}

// HeartbeatPath is one more way to reach the peer.
type HeartbeatPath struct {
	// Bind is this node's IP:port on the path (the port of cluster.bind).
	Bind string `mapstructure:"bind" json:"bind"`
	// Peer is the other box's IP:port on the path.
	Peer string `mapstructure:"peer" json:"peer"`
}

// Failover is the election and the virtual IPs it moves.
type Failover struct {
	// Interface is where the VIPs are added.
	Interface string `mapstructure:"interface" json:"interface"`
	// Priority is 1..254; the higher wins.
	Priority int `mapstructure:"priority" json:"priority"`
	// Preempt lets a higher-priority node take the VIPs back.
	Preempt bool `mapstructure:"preempt" json:"preempt"`
	// PreemptDelay is how long to wait before preempting.
	PreemptDelay time.Duration `mapstructure:"preempt_delay" json:"preempt_delay"`
	// AdvertInterval is the heartbeat period; the master is declared down
	// after 3 missed adverts plus a priority-dependent skew.
	AdvertInterval time.Duration `mapstructure:"advert_interval" json:"advert_interval"`
	// VIPs are the virtual addresses in CIDR form, IPv4 or IPv6; an entry
	// may name its interface keepalived style ("198.19.1.1/24 dev eth1"),
	// else it lives on Interface.
	VIPs []string `mapstructure:"vips" json:"vips"`
	// GARP tunes the gratuitous ARPs (or unsolicited NAs) sent on claim.
	GARP GARP `mapstructure:"garp" json:"garp"`
	// TrackInterfaces puts the node in FAULT when any loses carrier.
	// Defaults to [Interface].
	TrackInterfaces []string `mapstructure:"track_interfaces" json:"track_interfaces"`
	// Notify is an executable run on every transition as NOTIFY STATE NODE.
	Notify string `mapstructure:"notify" json:"notify"`
	// NotifyRunAs, a user name or uid, runs Notify as that user (see
	// HealthCheck.RunAs). [""]
	NotifyRunAs string `mapstructure:"notify_run_as" json:"notify_run_as"`
	// Witness, when set, is an IP address (such as the gateway) that must
	// answer ICMP echo before this node may become master, so a box cut
	// off from the network does not claim the VIPs. [""]
	Witness string `mapstructure:"witness" json:"witness"`
	// LinkHoldDown damps a flapping link: after a tracked link's carrier
	// returns, the node does not preempt until the link has been up this
	// long, doubled for each further loss in the last 30 s (up to 8x).
	// 0 disables. [1s]
	LinkHoldDown time.Duration `mapstructure:"link_holddown" json:"link_holddown"`
}

// GARP tunes the announcements that move the VIPs' neighbours' caches.
type GARP struct {
	// Count is how many are sent on claiming the VIPs, 0..100 [3].
	Count int `mapstructure:"count" json:"count"`
	// Interval is the gap between them [100ms].
	Interval time.Duration `mapstructure:"interval" json:"interval"`
	// Refresh re-announces while master; 0 disables.
	Refresh time.Duration `mapstructure:"refresh" json:"refresh"`
}

// VirtualCluster is one service on one VIP: a listener and its pool.
type VirtualCluster struct {
	// Name is unique among the clusters; the CLI and status use it.
	Name string `mapstructure:"name" json:"name"`
	// VIP is the address (no prefix length) of one of Failover.VIPs.
	VIP string `mapstructure:"vip" json:"vip"`
	// Port is 1..65535; VIP, Port and Protocol identify the listener.
	Port int `mapstructure:"port" json:"port"`
	// Protocol is tcp, udp or http [tcp]. http is an L7 proxy cluster
	// (see TLS and HTTP).
	Protocol string `mapstructure:"protocol" json:"protocol"`
	// Mode is how the cluster is served: proxy (a full proxy in user
	// space) or nat (packets forwarded by the kernel, connection state
	// replicated to the peer so established flows survive a failover)
	// [proxy].
	Mode string `mapstructure:"mode" json:"mode"`
	// NAT tunes a mode: nat cluster.
	NAT *NAT `mapstructure:"nat" json:"nat,omitempty"`
	// Algorithm picks a server: round_robin, weighted_round_robin,
	// least_conn, source_hash, random_two, fastest_response; a nat
	// cluster: round_robin, weighted_round_robin, source_hash, maglev
	// [round_robin].
	Algorithm string `mapstructure:"algorithm" json:"algorithm"`
	// Allow lists the client CIDRs let in; empty lets everyone in.
	Allow []string `mapstructure:"allow" json:"allow"`
	// MaxConns caps concurrent connections; 0 is unlimited.
	MaxConns int `mapstructure:"max_conns" json:"max_conns"`
	// SourceAddresses (protocol udp) are addresses the upstream sockets
	// bind to, in turn; each gives the flows a port range of its own.
	// Each box uses those it has, so one list can name both boxes'.
	// Empty: the kernel picks the address, and all flows share one port
	// range (ip_local_port_range).
	SourceAddresses []string `mapstructure:"source_addresses" json:"source_addresses,omitempty"`
	// Persistence, when set, keeps a client on one server.
	Persistence *Persistence `mapstructure:"persistence" json:"persistence,omitempty"`
	// Agent, when set, polls each server's load agent and scales the
	// server's weight by its answer (agent.go).
	Agent *Agent `mapstructure:"agent" json:"agent,omitempty"`
	// HealthCheck, when set, probes the servers; without it they are up.
	HealthCheck *HealthCheck `mapstructure:"health_check" json:"health_check,omitempty"`
	// TLS (protocol http) terminates TLS on the VIP (see http.go).
	TLS *TLS `mapstructure:"tls" json:"tls,omitempty"`
	// HTTP tunes a protocol: http cluster (see http.go).
	HTTP *HTTP `mapstructure:"http" json:"http,omitempty"`
	// RetryTimeout (protocol udp, mode proxy): a request left without an
	// answer this long is sent once more, unchanged, to another healthy
	// server, and its flow moves there; 0 is off. [0, or
	// DefaultRetryTimeout when the health check is dns or radius]
	RetryTimeout time.Duration `mapstructure:"retry_timeout" json:"retry_timeout,omitempty"`
	// Passive, when set, takes a server out at once when the traffic
	// itself fails on it (see Passive); the active check brings it back.
	Passive *Passive `mapstructure:"passive" json:"passive,omitempty"`
	// Servers is the pool; at least one.
	Servers []Server `mapstructure:"servers" json:"servers"`
}

// Persistence keeps a client on one server ("sticky sessions").
type Persistence struct {
	// Mode is source_ip, or cookie (protocol http): a signed cookie names
	// the server, source_ip is the fallback for a client without one.
	Mode string `mapstructure:"mode" json:"mode"`
	// Name, MaxAge, Path, Domain, Secure, HTTPOnly and SameSite are the
	// cookie's attributes (mode: cookie) [TANDEM, 0: a session cookie,
	// /, "", false, true, lax].
	Name     string        `mapstructure:"name" json:"name,omitempty"`
	MaxAge   time.Duration `mapstructure:"max_age" json:"max_age,omitempty"`
	Path     string        `mapstructure:"path" json:"path,omitempty"`
	Domain   string        `mapstructure:"domain" json:"domain,omitempty"`
	Secure   bool          `mapstructure:"secure" json:"secure,omitempty"`
	HTTPOnly *bool         `mapstructure:"http_only" json:"http_only,omitempty"`
	SameSite string        `mapstructure:"same_site" json:"same_site,omitempty"`
	// Fallback (mode: cookie) is what keeps a client that sends no
	// cookie on its server: source_ip (the source-IP table, as mode
	// source_ip) or none (the balancer picks; clients behind one address
	// then spread over the servers on their first request) [source_ip].
	Fallback string `mapstructure:"fallback" json:"fallback,omitempty"`
	// Mask groups clients by prefix length [32 for an IPv4 VIP, 128 for IPv6].
	Mask int `mapstructure:"mask" json:"mask"`
	// Timeout is the idle time after which an entry expires; required.
	Timeout time.Duration `mapstructure:"timeout" json:"timeout"`
}

// HealthCheck says how a cluster's servers are probed.
type HealthCheck struct {
	// Type is tcp, http, send_expect, dns, udp, radius, ldap, smtp or
	// exec.
	Type string `mapstructure:"type" json:"type"`
	// Path is the http request path; it starts with /.
	Path string `mapstructure:"path" json:"path"`
	// Host is the Host header an http check sends, for a server that
	// serves several sites [the server's IP:port].
	Host string `mapstructure:"host" json:"host"`
	// ExpectStatus is the http status of a healthy server [200].
	ExpectStatus int `mapstructure:"expect_status" json:"expect_status"`
	// ExpectHeader is "Name: regexp": the http reply must carry the
	// header with a value the regexp matches; "Name" alone only asks
	// that it be there. A server that answers 200 from a maintenance
	// page, a stale cache or the wrong backend is caught by its headers.
	ExpectHeader string `mapstructure:"expect_header" json:"expect_header"`
	// Expect is a regexp matched against the smtp EHLO reply (its lines
	// without the 250 codes, one a line), or against the values of an
	// ldap check's Attribute.
	Expect string `mapstructure:"expect" json:"expect"`
	// ExpectBody is a substring of the http body, or a regexp the reply
	// must match for send_expect and udp.
	ExpectBody string `mapstructure:"expect_body" json:"expect_body"`
	// Send is the text sent by send_expect and udp; SendHex the same as hex.
	Send    string `mapstructure:"send" json:"send"`
	SendHex string `mapstructure:"send_hex" json:"send_hex"`
	// Query is the name a dns check asks for.
	Query string `mapstructure:"query" json:"query"`
	// Secret is the radius shared secret (Status-Server); never printed
	// nor hashed.
	Secret string `mapstructure:"secret" json:"-"`
	// TLS speaks TLS from the first byte: a tcp check is a TLS
	// handshake, http uses https, ldap LDAPS and smtp SMTPS. StartTLS
	// upgrades an ldap or smtp connection instead. Either way the
	// server's certificate must chain to CAFile and be valid for
	// ServerName now, or the probe fails; one that expires within
	// CertWarnDays still passes, with a warning in status. [false]
	TLS      bool `mapstructure:"tls" json:"tls"`
	StartTLS bool `mapstructure:"starttls" json:"starttls"`
	// ServerName is the name the certificate must be valid for, also
	// sent as SNI [host for http, else the server's IP address, which
	// the certificate must then list].
	ServerName string `mapstructure:"server_name" json:"server_name"`
	// CAFile is a PEM file of the CAs the certificates must chain to
	// [the system's roots].
	CAFile string `mapstructure:"ca_file" json:"ca_file"`
	// CertWarnDays warns this many days before a certificate expires; 0
	// never warns [14].
	CertWarnDays int `mapstructure:"cert_warn_days" json:"cert_warn_days"`
	// Base, Filter and Scope (base, one or sub) are an ldap check's
	// search, which must find at least MinEntries entries: a server that
	// answers from an emptied or broken database fails, where a bind
	// alone would pass. Base is required: the root DSE answers even
	// when the directory is gone. [filter (objectClass=*), scope sub,
	// min_entries 1]
	Base       string `mapstructure:"base" json:"base"`
	Filter     string `mapstructure:"filter" json:"filter"`
	Scope      string `mapstructure:"scope" json:"scope"`
	MinEntries int    `mapstructure:"min_entries" json:"min_entries"`
	// Attribute, when set, must be present in one of the entries found,
	// with a value Expect matches when Expect is set.
	Attribute string `mapstructure:"attribute" json:"attribute"`
	// BindDN, when set, binds as this DN with the password held in
	// PasswordFile (its first line) before the search; without it the
	// check searches anonymously. The password is read by the node,
	// never printed and never part of the config hash.
	BindDN       string `mapstructure:"bind_dn" json:"bind_dn"`
	PasswordFile string `mapstructure:"password_file" json:"password_file"`
	// Command is run by exec; exit status 0 means up.
	Command string `mapstructure:"command" json:"command"`
	// RunAs, a user name or uid, runs exec's command as that user (the
	// daemon must be root or hold CAP_SETUID and CAP_SETGID); "" runs it
	// as the daemon's user. [""]
	RunAs string `mapstructure:"run_as" json:"run_as"`
	// Interval is the probe period [1s]; Timeout, at most Interval, bounds
	// one probe [500ms].
	Interval time.Duration `mapstructure:"interval" json:"interval"`
	Timeout  time.Duration `mapstructure:"timeout" json:"timeout"`
	// Rise successes in a row bring a server up, Fall failures take it
	// down [2, 2].
	Rise int `mapstructure:"rise" json:"rise"`
	Fall int `mapstructure:"fall" json:"fall"`
}

// Server is one member of a cluster's pool.
type Server struct {
	// Name is unique in the cluster.
	Name string `mapstructure:"name" json:"name"`
	// Address is the server's IP:port.
	Address string `mapstructure:"address" json:"address"`
	// Weight is 1..256, used by weighted algorithms [1].
	Weight int `mapstructure:"weight" json:"weight"`
	// SendProxy prepends a PROXY protocol v2 header to each connection.
	SendProxy bool `mapstructure:"send_proxy" json:"send_proxy"`
	// MaxConns limits the server's open connections (live flows for
	// UDP, requests in flight for HTTP); 0 is unlimited. [0]
	MaxConns int `mapstructure:"max_conns" json:"max_conns"`
	// Pool (protocol http) names the pool of the cluster the server is
	// in, which http.rules route to; "" is the default pool. [""]
	Pool string `mapstructure:"pool" json:"pool,omitempty"`
}

// Default returns a config with every top-level default of CONTRACT.md
// filled in and the required keys left empty. Defaults inside the virtual
// clusters, and failover.track_interfaces, depend on what the file says:
// ApplyDefaults sets them.
func Default() Config {
	return Config{
		Node: Node{
			APISocket:  "/run/tandem/tandem.sock",
			LogLevel:   "info",
			RTPriority: 10,
		},
		Cluster: Cluster{
			Label: "tandem",
		},
		Failover: Failover{
			Priority:       100,
			Preempt:        true,
			AdvertInterval: 50 * time.Millisecond,
			LinkHoldDown:   time.Second,
			GARP: GARP{
				Count:    3,
				Interval: 100 * time.Millisecond,
			},
		},
	}
}
