package node

import (
	"fmt"

	"github.com/tandem-lb/tandem/dataplane"
	"github.com/tandem-lb/tandem/healthcheck"
	"github.com/tandem-lb/tandem/pkg/api"
)

// buildAgent gives a cluster with an agent: key its agent monitor, whose
// readings set the servers' agent loads (dataplane/agent.go): a load
// scales the weight, -1 drains, no answer restores the configured weight.
// The pool is refreshed on every change: a drain needs it, and a nat
// cluster's kernel table follows new weights only then. Notable changes
// (healthcheck.AgentNotable) become events.
func (n *Node) buildAgent(rt *vcluster) {
	vc := rt.cfg
	if vc.Agent == nil {
		return
	}
	var targets []healthcheck.Target
	for _, s := range rt.pool.Servers() {
		targets = append(targets, healthcheck.Target{Cluster: vc.Name, Server: s.Name, Addr: s.Addr})
	}
	pool := rt.pool
	rt.agent = healthcheck.NewAgentMonitor(*vc.Agent, targets, func(c healthcheck.AgentChange) {
		s := pool.Server(c.Target.Server)
		if s == nil {
			return
		}
		load := dataplane.AgentNone
		if c.Reading.Answered {
			load = c.Reading.Load
		}
		s.SetAgentLoad(load)
		pool.Refresh()
		if c.Notable {
			n.events.add("agent", "%s/%s %s", c.Target.Cluster, c.Target.Server, agentSays(c.Reading, s))
		}
	}, n.log.With("component", "agent"))
}

// agentSays is an event's account of a reading and what it does.
func agentSays(r healthcheck.AgentReading, s *dataplane.Server) string {
	switch {
	case !r.Answered:
		return fmt.Sprintf("agent does not answer (%s): weight %d as configured", r.Detail, s.Weight)
	case r.Load == healthcheck.AgentTakeMeOut:
		return "agent: -1: draining (no new connections)"
	}
	return fmt.Sprintf("agent: load %d: weight %s", r.Load, weightString(s.EffectiveWeight()))
}

// weightString prints an effective weight (hundredths) as a weight.
func weightString(w int64) string { return fmt.Sprintf("%.2f", float64(w)/100) }

// agentStatus is a server's agent in status; nil in a cluster without
// agent:.
func (c *vcluster) agentStatus(name string, last map[string]healthcheck.AgentReading) *api.ServerAgent {
	if c.agent == nil {
		return nil
	}
	s := c.pool.Server(name)
	if s == nil {
		return nil
	}
	st := &api.ServerAgent{State: "pending", Weight: float64(s.EffectiveWeight()) / 100}
	r, polled := last[name]
	if polled {
		at := r.At
		st.Detail, st.At = r.Detail, &at
		st.State = "no answer"
	}
	switch load := s.AgentLoad(); {
	case load == dataplane.AgentDrain:
		st.State, st.Reason = "drain", "agent: -1"
		st.Load = &load
	case load != dataplane.AgentNone:
		st.State, st.Load = "load", &load
	}
	return st
}
