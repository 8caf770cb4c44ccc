// Package api is the control API of a node: HTTP and JSON over a unix
// socket (mode 0600), served by `tandem run` and used by the other
// subcommands. The types here are the `tandem status --json` shape of
// CONTRACT.md.
package api

import "time"

// Status is what a node knows of the pair.
type Status struct {
	Node       string `json:"node"`
	State      string `json:"state"`
	Priority   int    `json:"priority"`
	ConfigHash string `json:"config_hash"`
	// StateSince is when State was entered; StateAgeMs is now minus that.
	StateSince time.Time `json:"state_since"`
	StateAgeMs int64     `json:"state_age_ms"`
	// Holds are the reasons this node may not become master now.
	Holds       []string     `json:"holds,omitempty"`
	Down        []string     `json:"down_interfaces,omitempty"`
	Peers       []Peer       `json:"peers"`
	VIPs        []VIP        `json:"vips"`
	Clusters    []Cluster    `json:"clusters"`
	Persistence Persistence  `json:"persistence"`
	Transitions []Transition `json:"transitions"`
	// TransitionsTotal counts every transition since start (Transitions
	// keeps only the recent ones).
	TransitionsTotal uint64  `json:"transitions_total"`
	Adverts          Adverts `json:"adverts"`
	// SplitBrain is what the split-brain defence saw.
	SplitBrain SplitBrain `json:"split_brain"`
	Version    string     `json:"version"`
	Now        time.Time  `json:"now"`
}

// SplitBrain reports the split-brain defence: ARP frames read on the VIP
// interface, other boxes' announcements of our VIPs (rivals), and the
// witness.
type SplitBrain struct {
	ARPRead      uint64 `json:"arp_read"`
	ARPMalformed uint64 `json:"arp_malformed"`
	Rivals       uint64 `json:"rival_announcements"`
	// Witness is empty when failover.witness is not set.
	Witness *Witness `json:"witness,omitempty"`
	// AddressConflicts counts announcements of our VIPs by boxes that
	// are not the peer (whose address its adverts carry); LastConflict is
	// the latest. They never hold a node back.
	AddressConflicts uint64    `json:"address_conflicts"`
	LastConflict     *Conflict `json:"last_conflict,omitempty"`
}

// Conflict is another box announcing one of our VIPs.
type Conflict struct {
	VIP string    `json:"vip"`
	MAC string    `json:"mac"`
	At  time.Time `json:"at"`
}

// Witness is failover.witness and how it answers.
type Witness struct {
	Address  string `json:"address"`
	Sent     uint64 `json:"sent"`
	Answered uint64 `json:"answered"`
	// LastAnswerMs is -1 before the first answer.
	LastAnswerMs int64 `json:"last_answer_ms"`
	Reachable    bool  `json:"reachable"`
}

// Peer is the other box as this node sees it. State is UNKNOWN when the
// peer is not alive, so a dead peer is never shown as MASTER; LastState
// keeps what it last said.
type Peer struct {
	Name        string `json:"name"`
	Address     string `json:"address"`
	Alive       bool   `json:"alive"`
	State       string `json:"state"`
	LastState   string `json:"last_state,omitempty"`
	Priority    int    `json:"priority"`
	ConfigHash  string `json:"config_hash"`
	ConfigMatch bool   `json:"config_match"`
	// ConfigDiff names the config sections that differ (cluster,
	// failover, clusters); empty when they match.
	ConfigDiff []string `json:"config_diff,omitempty"`
	// LastHeardMs is -1 when the peer has never been heard.
	LastHeardMs int64 `json:"last_heard_ms"`
	StateAgeMs  int64 `json:"state_age_ms"`
	// Member is memberlist's view of the peer (alive, suspect, dead, left).
	Member string `json:"member,omitempty"`
}

// VIP is one virtual address and whether this node holds it.
type VIP struct {
	Address   string `json:"address"`
	Interface string `json:"interface"`
	Held      bool   `json:"held"`
}

// Cluster is one virtual cluster and its pool.
type Cluster struct {
	Name      string `json:"name"`
	VIP       string `json:"vip"`
	Port      int    `json:"port"`
	Protocol  string `json:"protocol"`
	Algorithm string `json:"algorithm,omitempty"`
	// Mode is proxy or nat; a nat cluster's ActiveConns and TotalConns
	// count flows in the kernel's connection tracking.
	Mode        string `json:"mode,omitempty"`
	ActiveConns int64  `json:"active_conns"`
	TotalConns  uint64 `json:"total_conns"`
	// BytesIn is client → server, BytesOut server → client.
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`
	// DatagramsIn (client → server) and DatagramsOut count relayed
	// datagrams of a UDP cluster; ActiveConns and TotalConns count its
	// flows.
	DatagramsIn  uint64 `json:"datagrams_in,omitempty"`
	DatagramsOut uint64 `json:"datagrams_out,omitempty"`
	// MaxFlows is a UDP cluster's cap on live flows (max_conns or the
	// node's budget); ParkedFlows the live flows whose upstream socket is
	// parked in io_uring rather than held by a descriptor.
	MaxFlows    int64 `json:"max_flows,omitempty"`
	ParkedFlows int64 `json:"parked_flows,omitempty"`
	// Refused counts refused connections (dropped datagrams for UDP) by
	// reason (standby, allow, max_conns, no_server, connect_failed;
	// oversize, malformed, upstream_error, client_error).
	Refused map[string]uint64 `json:"refused,omitempty"`
	// Retries counts a UDP cluster's requests re-sent to another server
	// (retry_timeout); Unanswered the requests a server left without an
	// answer in time (a late answer is refused "late_answer").
	Retries    uint64 `json:"retries,omitempty"`
	Unanswered uint64 `json:"unanswered,omitempty"`
	// Serving is true while this box accepts connections (MASTER).
	Serving bool     `json:"serving"`
	Servers []Server `json:"servers"`
	// HTTP is set for a protocol: http cluster (see http.go).
	HTTP *HTTPStatus `json:"http,omitempty"`
}

// Server is one member of a pool.
type Server struct {
	Name        string `json:"name"`
	Address     string `json:"address"`
	Healthy     bool   `json:"healthy"`
	Admin       string `json:"admin"`
	ActiveConns int64  `json:"active_conns"`
	TotalConns  uint64 `json:"total_conns"`
	// ConnectFailures counts connects to the server that failed.
	ConnectFailures uint64 `json:"connect_failures"`
	// LastCheck is the last health check's outcome ("" without checks).
	LastCheck        string     `json:"last_check,omitempty"`
	LastCheckOK      bool       `json:"last_check_ok"`
	LastCheckLatency float64    `json:"last_check_latency_ms"`
	LastCheckAt      *time.Time `json:"last_check_at,omitempty"`
	// CheckWarning is what the last check warned of though it may have
	// passed: "certificate expires in 5 days (2026-03-01 12:00 UTC)".
	CheckWarning string `json:"check_warning,omitempty"`
	// CertExpiresInDays is how many days (rounded; negative once past)
	// the certificate the last check saw has left; absent for checks
	// that do not speak TLS.
	CertExpiresInDays *int `json:"cert_expires_in_days,omitempty"`
	// HTTP is set for a server of a protocol: http cluster.
	HTTP *ServerHTTP `json:"http,omitempty"`
	// DownReason is why a server that is down is: the check that took
	// it out, or passive health ("passive: 3 connects refused").
	DownReason string `json:"down_reason,omitempty"`
	// Agent is what the server's load agent says, in a cluster with an
	// agent: key; nil otherwise.
	Agent *ServerAgent `json:"agent,omitempty"`
}

// ServerAgent is a server's load feedback (a cluster's agent: key).
type ServerAgent struct {
	// State is "load" (the agent answers with a load, which scales the
	// weight), "drain" (it answered -1: no new connections), "no answer"
	// (the configured weight holds) or "pending" (not polled yet).
	State string `json:"state"`
	// Load is the last load the agent answered (-1..100); absent unless
	// it answers.
	Load *int `json:"load,omitempty"`
	// Weight is the effective weight the balancer uses, as a multiple of
	// one configured weight unit (configured weight × (100 − load) / 100,
	// at least weight / 100; 0 while draining).
	Weight float64 `json:"weight"`
	// Reason says why the server is out by its agent's will: "agent: -1".
	Reason string `json:"reason,omitempty"`
	// Detail is the last poll's outcome ("load 37", "connect: connection
	// refused"), At when it began.
	Detail string     `json:"detail,omitempty"`
	At     *time.Time `json:"at,omitempty"`
}

// Persistence summarises the sticky tables and their replication to the
// peer.
type Persistence struct {
	// Enabled is true when some cluster has persistence.
	Enabled bool   `json:"enabled"`
	Entries uint64 `json:"entries"`
	// TableFull counts clients not made sticky because a table was at
	// its cap (dataplane.DefaultStickyMax entries).
	TableFull uint64 `json:"table_full"`
	Sent      uint64 `json:"sent"`
	Received  uint64 `json:"received"`
	Acked     uint64 `json:"acked"`
	// State is IN SYNC, SYNCING or NOT SYNCED; Reason says why when it
	// is not IN SYNC.
	State         string `json:"state,omitempty"`
	Reason        string `json:"reason,omitempty"`
	Peer          string `json:"peer,omitempty"`
	PeerConnected bool   `json:"peer_connected"`
	// BulkDone: the peer's whole table has arrived over this connection.
	BulkDone bool `json:"bulk_done"`
	// LagMs is the publish-to-acknowledgement time of the last update.
	LagMs           float64           `json:"lag_ms"`
	LastBulkEntries uint64            `json:"last_bulk_entries"`
	LastBulkMs      float64           `json:"last_bulk_ms"`
	Resyncs         uint64            `json:"resyncs"`
	Queued          int               `json:"queued"`
	Dropped         map[string]uint64 `json:"dropped,omitempty"`
	// ConntrackEntries counts this box's connection-tracking entries of
	// nat clusters (its own flows as master, the peer's replicated ones
	// as backup); ConntrackInSync is true when the peer's whole table
	// and its updates have arrived (State IN SYNC with nat clusters).
	ConntrackEntries uint64 `json:"conntrack_entries"`
	ConntrackInSync  bool   `json:"conntrack_in_sync"`
	// Flow records: published to the peer, applied from it, failed to
	// apply (by reason), and event-socket overflows that forced a resync.
	FlowsSent     uint64            `json:"flows_sent,omitempty"`
	FlowsApplied  uint64            `json:"flows_applied,omitempty"`
	FlowErrors    map[string]uint64 `json:"flow_errors,omitempty"`
	FlowOverflows uint64            `json:"flow_overflows,omitempty"`
}

// StickyEntry is one sticky client, for `tandem persistence list`.
type StickyEntry struct {
	Cluster     string `json:"cluster"`
	Client      string `json:"client"`
	Server      string `json:"server"`
	ExpiresInMs int64  `json:"expires_in_ms"`
}

// Transition is one change of election state, with its reason.
type Transition struct {
	At     time.Time `json:"at"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason"`
}

// Adverts counts heartbeats and what was dropped, by reason.
type Adverts struct {
	Sent     uint64            `json:"sent"`
	Received uint64            `json:"received"`
	Dropped  map[string]uint64 `json:"dropped,omitempty"`
}

// Error is the body of a failed request.
type Error struct {
	Error string `json:"error"`
}

// Event is one entry of a node's event log (tandem events): Kind is one
// of transition, vip, garp, health, admin, hold, sync, switchover.
type Event struct {
	At      time.Time `json:"at"`
	Node    string    `json:"node"`
	Kind    string    `json:"kind"`
	Message string    `json:"message"`
}

// ReloadResult is the answer to POST /v1/reload: what changed, one line
// each, or why nothing was reloaded.
type ReloadResult struct {
	Changes []string `json:"changes"`
	// Error and Problems are set when the reload was refused; Problems
	// lists an invalid config's problems as FILE:LINE: key: message.
	Error    string   `json:"error,omitempty"`
	Problems []string `json:"problems,omitempty"`
}

// ReloadError is a refused reload: an invalid config (with its
// problems) or a change that needs a restart.
type ReloadError struct {
	Msg      string
	Problems []string
}

func (e *ReloadError) Error() string { return e.Msg }
