package node

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/dataplane"
	"github.com/tandem-lb/tandem/healthcheck"
	"github.com/tandem-lb/tandem/pkg/config"
)

// TestAgentStatus: status shows what each server's agent says and the
// weight it gives; a drain carries the reason "agent: -1".
func TestAgentStatus(t *testing.T) {
	var servers []*dataplane.Server
	for i, name := range []string{"a", "b", "c", "d"} {
		servers = append(servers, dataplane.NewServer(i, name, netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(21 + i)}), 80), 2))
	}
	b, _ := dataplane.NewBalancer(dataplane.WeightedRoundRobin)
	c := &vcluster{pool: dataplane.NewPool(servers, b)}
	if c.agentStatus("a", nil) != nil {
		t.Fatal("a cluster without agent: shows an agent")
	}
	c.agent = healthcheck.NewAgentMonitor(config.Agent{Port: 1510}, nil, nil, nil)
	servers[0].SetAgentLoad(50)
	servers[1].SetAgentLoad(dataplane.AgentDrain)
	now := time.Now()
	last := map[string]healthcheck.AgentReading{
		"a": {Answered: true, Load: 50, Detail: "load 50", At: now},
		"b": {Answered: true, Load: -1, Detail: "-1: take me out", At: now},
		"c": {Detail: "connect: connection refused", At: now},
	}
	for _, tt := range []struct {
		name, state, reason string
		load                *int
		weight              float64
	}{
		{"a", "load", "", agentIntPtr(50), 1},
		{"b", "drain", "agent: -1", agentIntPtr(-1), 0},
		{"c", "no answer", "", nil, 2},
		{"d", "pending", "", nil, 2},
	} {
		st := c.agentStatus(tt.name, last)
		if st == nil || st.State != tt.state || st.Reason != tt.reason || st.Weight != tt.weight ||
			(st.Load == nil) != (tt.load == nil) || (st.Load != nil && *st.Load != *tt.load) {
			t.Errorf("server %s: %+v, want state %q reason %q load %v weight %v", tt.name, st, tt.state, tt.reason, tt.load, tt.weight)
		}
	}
	if got := agentSays(last["c"], servers[2]); !strings.Contains(got, "does not answer (connect: connection refused): weight 2 as configured") {
		t.Errorf("event for a silent agent: %q", got)
	}
	if got := agentSays(last["a"], servers[0]); got != "agent: load 50: weight 1.00" {
		t.Errorf("event for load 50 on weight 2: %q", got)
	}
}

func agentIntPtr(n int) *int { return &n }
