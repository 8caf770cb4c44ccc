package dataplane

import (
	"math"
	"testing"
)

func TestAgentWeight(t *testing.T) {
	for _, tt := range []struct {
		weight, load int
		want         int64
	}{
		{1, AgentNone, 100}, // no reading: the configured weight
		{1, 0, 100},         // idle: the configured weight too
		{1, 10, 90},
		{1, 50, 50},
		{1, 90, 10},
		{1, 99, 1},
		{1, 100, 1}, // the floor: a trickle, never nothing
		{3, 50, 150},
		{3, 100, 3},
		{256, 0, 25600}, // the largest effective weight
		{256, 100, 256},
		{0, 50, 50}, // a weight below 1 counts as 1
		{1, AgentDrain, 0},
		{5, AgentDrain, 0},
		{2, 101, 200}, // out of range: as no reading
		{2, -7, 200},
	} {
		if got := AgentWeight(tt.weight, tt.load); got != tt.want {
			t.Errorf("AgentWeight(%d, %d) = %d, want %d", tt.weight, tt.load, got, tt.want)
		}
	}
}

func TestServerAgentLoad(t *testing.T) {
	var zero Server // built without NewServer: no reading
	if zero.AgentLoad() != AgentNone || zero.EffectiveWeight() != 100 {
		t.Fatalf("zero Server: load %d, effective weight %d; want none, 100", zero.AgentLoad(), zero.EffectiveWeight())
	}
	s := testServers(2)[0]
	steps := []struct {
		load          int
		wantLoad      int
		wantChanged   bool
		wantAvailable bool
		wantWeight    int64
	}{
		{40, 40, false, true, 120},
		{AgentDrain, AgentDrain, true, false, 0},
		{AgentDrain, AgentDrain, false, false, 0},
		{100, 100, true, true, 2},
		{AgentNone, AgentNone, false, true, 200},
		{AgentDrain, AgentDrain, true, false, 0},
		{500, AgentNone, true, true, 200}, // garbage undrains: no reading
	}
	for i, st := range steps {
		changed := s.SetAgentLoad(st.load)
		if changed != st.wantChanged || s.AgentLoad() != st.wantLoad || s.Available() != st.wantAvailable ||
			s.EffectiveWeight() != st.wantWeight {
			t.Errorf("step %d SetAgentLoad(%d): changed %v load %d available %v weight %d; want %v %d %v %d", i, st.load,
				changed, s.AgentLoad(), s.Available(), s.EffectiveWeight(),
				st.wantChanged, st.wantLoad, st.wantAvailable, st.wantWeight)
		}
	}
}

// agentServers builds equal-weight servers a, b, c, ... with the agents'
// loads given.
func agentServers(loads ...int) []*Server {
	ws := make([]int, len(loads))
	for i := range ws {
		ws[i] = 1
	}
	srv := testServers(ws...)
	for i, l := range loads {
		srv[i].SetAgentLoad(l)
	}
	return srv
}

// TestAgentLoadsShareNewConnections is the README's promise at the
// balancer: loads 10, 50 and 90 on equal weights get 90 : 50 : 10 of the
// new connections under weighted_round_robin (exactly, per period), and
// of the open connections under least_conn and random_two, which weigh
// open connections.
func TestAgentLoadsShareNewConnections(t *testing.T) {
	want := map[string]float64{"a": 0.6, "b": 1.0 / 3, "c": 1.0 / 15}

	srv := agentServers(10, 50, 90)
	got := pickCounts(mustBalancer(t, WeightedRoundRobin), srv, 150*10)
	if got["a"] != 900 || got["b"] != 500 || got["c"] != 100 {
		t.Errorf("weighted_round_robin at loads 10, 50, 90 over 1500 picks: %v, want a 900 b 500 c 100", got)
	}

	// Connections held open: each pick counts as an open connection.
	for _, algo := range []string{LeastConn, RandomTwo} {
		srv := agentServers(10, 50, 90)
		b := mustBalancer(t, algo)
		const n = 3000
		for range n {
			b.Pick(testClient, srv).Acquire()
		}
		for _, s := range srv {
			share := float64(s.Active()) / n
			if math.Abs(share-want[s.Name]) > 0.02 {
				t.Errorf("%s: server %s (load %d) holds %.3f of %d open connections, want %.3f ± 0.02",
					algo, s.Name, s.AgentLoad(), share, n, want[s.Name])
			}
		}
	}
}

// TestAgentWithoutReadingKeepsConfiguredWeights: a server whose agent
// does not answer weighs as configured beside ones that do, in the same
// units (weight 1 without a reading = load 0).
func TestAgentWithoutReadingKeepsConfiguredWeights(t *testing.T) {
	srv := agentServers(AgentNone, 50)
	got := pickCounts(mustBalancer(t, WeightedRoundRobin), srv, 300)
	if got["a"] != 200 || got["b"] != 100 {
		t.Errorf("no reading beside load 50: %v, want a 200 b 100", got)
	}
}

// TestAgentDrainLeavesThePool: -1 takes the server out of the snapshot
// on Refresh (no new connection), and its open connections are left
// alone; a reading of 0..100 or none brings it back.
func TestAgentDrainLeavesThePool(t *testing.T) {
	srv := agentServers(0, 0)
	pool := NewPool(srv, mustBalancer(t, WeightedRoundRobin))
	srv[0].Acquire()
	if !srv[0].SetAgentLoad(AgentDrain) {
		t.Fatal("drain did not report a change of availability")
	}
	pool.Refresh()
	for range 10 {
		if s := pool.Pick(testClient, nil); s != srv[1] {
			t.Fatalf("picked %s while a drains", s.Name)
		}
	}
	if srv[0].Active() != 1 || !srv[0].Healthy() || srv[0].Admin() != Enabled {
		t.Errorf("draining by agent touched the server: active %d healthy %v admin %v",
			srv[0].Active(), srv[0].Healthy(), srv[0].Admin())
	}
	srv[0].SetAgentLoad(AgentNone)
	pool.Refresh()
	if got := pickCounts(mustBalancer(t, WeightedRoundRobin), pool.Snapshot(), 4); got["a"] != 2 {
		t.Errorf("after the agent stopped answering: %v, want a back with its configured weight", got)
	}
}

// TestNATWeightedSlotsFollowAgents: a nat weighted_round_robin cluster's
// kernel slots follow the agents' loads on Refresh, and -1 empties the
// server's slots.
func TestNATWeightedSlotsFollowAgents(t *testing.T) {
	k := &fakeKernel{}
	c, pool := newNAT(t, natVC("weighted_round_robin"), k) // weights 1 (im1) and 3 (im2)
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	s1, s2 := pool.Servers()[0], pool.Servers()[1]
	s1.SetAgentLoad(0)
	s2.SetAgentLoad(80) // 1×100 : 3×20 = 5 : 3
	pool.Refresh()
	s := k.last(t)[0]
	if len(s.Slots) != 8 || count(s.Slots, im1) != 5 || count(s.Slots, im2) != 3 {
		t.Errorf("loads 0 and 80 on weights 1 and 3: slots %v, want 5 of im1 and 3 of im2", s.Slots)
	}
	s2.SetAgentLoad(AgentDrain)
	pool.Refresh()
	s = k.last(t)[0]
	if count(s.Slots, im2) != 0 || count(s.Slots, im1) == 0 {
		t.Errorf("im2 drained by its agent: slots %v", s.Slots)
	}
}
