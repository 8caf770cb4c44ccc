package config

import "time"

// Agent is load feedback from the servers of a cluster (the appliances'
// "server agent"): every Interval the node connects to each server's
// address on Port, and the agent there answers one ASCII integer and
// closes: 0..100 is the server's load, which scales its weight for
// weighted_round_robin, least_conn and random_two (and a nat cluster's
// weighted_round_robin); -1 drains it (no new connections, open ones
// kept). A server whose agent does not answer within Timeout keeps its
// configured weight. README, "Load feedback (agent)".
type Agent struct {
	// Port is the agents' TCP port on the servers' addresses; required.
	Port int `mapstructure:"port" json:"port"`
	// Interval is the poll period, 100ms..10m [5s].
	Interval time.Duration `mapstructure:"interval" json:"interval"`
	// Timeout bounds one poll, connect to close; at most Interval [1s,
	// or Interval when that is shorter].
	Timeout time.Duration `mapstructure:"timeout" json:"timeout"`
}

// Agent defaults and limits.
const (
	DefaultAgentInterval = 5 * time.Second
	DefaultAgentTimeout  = time.Second
	minAgentInterval     = 100 * time.Millisecond
	maxAgentInterval     = 10 * time.Minute
)

// agentDefaults fills in an agent's interval and timeout, those not
// written in the file.
func (c *Config) agentDefaults(a *Agent, k string) {
	if a.Interval == 0 && !c.written(k+".interval") {
		a.Interval = DefaultAgentInterval
	}
	if a.Timeout == 0 && !c.written(k+".timeout") {
		a.Timeout = min(DefaultAgentTimeout, a.Interval)
	}
}

// agent checks a cluster's agent key at k.
func (v *validator) agent(k string, a *Agent) {
	if a.Port < minPort || a.Port > maxPort {
		v.add(k+".port", "must be %d..%d: the agents' TCP port on the servers (got %d)", minPort, maxPort, a.Port)
	}
	if a.Interval < minAgentInterval || a.Interval > maxAgentInterval {
		v.add(k+".interval", "must be %s..%s (got %s)", minAgentInterval, maxAgentInterval, a.Interval)
	}
	switch {
	case a.Timeout <= 0:
		v.add(k+".timeout", "must be > 0 (got %s)", a.Timeout)
	case a.Interval > 0 && a.Timeout > a.Interval:
		v.add(k+".timeout", "must not exceed interval %s (got %s)", a.Interval, a.Timeout)
	}
}
