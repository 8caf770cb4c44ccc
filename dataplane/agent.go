package dataplane

// Load feedback from the servers' agents (a cluster's `agent:` key): each
// server reports a load 0..100, or -1 to be taken out, and the weighted
// balancers follow it.
//
// The scaling, as the README promises it: a server of configured weight W
// whose agent reports load L (0..100) weighs
//
//	W × max(100 − L, 1)
//
// in hundredths of a weight unit; a server without an agent reading (no
// agent configured, or it did not answer) weighs W × 100, its configured
// weight. So loads 10, 50 and 90 on equal weights give 90 : 50 : 10 of
// the new connections, and a server at load 100 still gets 1/100 of its
// configured share (a trickle that lets its agent's report recover
// without the operator), never nothing. Only -1 takes a server out: it
// drains, taking no new connections while its open ones finish.
//
// The hundredths keep weight-1 servers, the default, meaningful: scaled in
// whole units they would all floor to 1.

// Agent load values with a meaning of their own.
const (
	// AgentDrain is the agent's "take me out": the server drains.
	AgentDrain = -1
	// AgentNone is no reading: no agent, or one that did not answer (or
	// answered something else than -1..100). The configured weight holds.
	AgentNone = -2
	// AgentMaxLoad is the highest load an agent reports.
	AgentMaxLoad = 100
)

// agentScale is the number of effective-weight units in one unit of
// configured weight.
const agentScale = 100

// AgentWeight is the effective weight, in hundredths of a configured
// weight unit, of a server of configured weight whose agent reports load:
// weight × max(100 − load, 1) for a load of 0..100, weight × 100 for
// AgentNone (and anything out of range), and 0 for AgentDrain, which is
// never picked. A weight below 1 counts as 1.
func AgentWeight(weight, load int) int64 {
	w := int64(max(weight, 1))
	switch {
	case load == AgentDrain:
		return 0
	case load < 0 || load > AgentMaxLoad:
		return w * agentScale
	}
	return w * int64(max(agentScale-load, 1))
}

// SetAgentLoad records what the server's agent reported: a load 0..100,
// AgentDrain, or AgentNone when it did not answer; any other value counts
// as AgentNone. It reports whether the server's availability changed (it
// started or stopped draining), in which case the caller must Refresh the
// pool; a new load alone takes effect on the next pick without one (a nat
// cluster's kernel table follows only on Refresh).
func (s *Server) SetAgentLoad(load int) (availabilityChanged bool) {
	if load < AgentDrain || load > AgentMaxLoad {
		load = AgentNone
	}
	old := s.agent.Swap(int32(load - AgentNone))
	return (int(old)+AgentNone == AgentDrain) != (load == AgentDrain)
}

// AgentLoad is the agent's last reading: 0..100, AgentDrain or AgentNone.
func (s *Server) AgentLoad() int {
	// Stored offset by AgentNone, so a Server's zero value reads as none.
	return int(s.agent.Load()) + AgentNone
}

// AgentDrained reports whether the server's agent asked to be taken out.
func (s *Server) AgentDrained() bool { return s.AgentLoad() == AgentDrain }

// EffectiveWeight is the weight the weighted balancers use, in hundredths
// of a configured weight unit: AgentWeight of the configured weight and
// the agent's reading (Weight × 100 without one).
func (s *Server) EffectiveWeight() int64 { return AgentWeight(s.Weight, s.AgentLoad()) }
