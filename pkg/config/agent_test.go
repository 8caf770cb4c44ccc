package config

import (
	"slices"
	"testing"
	"time"
)

func TestAgentDefaults(t *testing.T) {
	for _, tt := range []struct {
		agent         string
		interval, tmo time.Duration
	}{
		{"{port: 1510}", 5 * time.Second, time.Second},
		{"{port: 1510, interval: 500ms}", 500 * time.Millisecond, 500 * time.Millisecond},
		{"{port: 1510, interval: 2s, timeout: 300ms}", 2 * time.Second, 300 * time.Millisecond},
	} {
		c, err := Load(writeConfig(t, editOf(t, base, "    servers:\n", "    agent: "+tt.agent+"\n    servers:\n")))
		if err != nil {
			t.Fatalf("agent %s: %v", tt.agent, err)
		}
		a := c.Clusters[0].Agent
		if a == nil || a.Port != 1510 || a.Interval != tt.interval || a.Timeout != tt.tmo {
			t.Errorf("agent %s: %+v, want port 1510 interval %v timeout %v", tt.agent, a, tt.interval, tt.tmo)
		}
	}
	c, err := Load(writeConfig(t, base))
	if err != nil {
		t.Fatal(err)
	}
	if c.Clusters[0].Agent != nil {
		t.Errorf("a cluster without agent has %+v", c.Clusters[0].Agent)
	}
}

func TestAgentProblems(t *testing.T) {
	agent := func(a string) string { return editOf(t, base, "    servers:\n", "    agent: "+a+"\n    servers:\n") }
	for _, tt := range []struct {
		name string
		src  string
		want []string
	}{
		{"no port", agent("{interval: 5s}"),
			[]string{"FILE:26: clusters[0].agent.port: must be 1..65535: the agents' TCP port on the servers (got 0)"}},
		{"port too high", agent("{port: 70000}"),
			[]string{"FILE:26: clusters[0].agent.port: must be 1..65535: the agents' TCP port on the servers (got 70000)"}},
		{"interval too short", agent("{port: 1510, interval: 10ms}"),
			[]string{"FILE:26: clusters[0].agent.interval: must be 100ms..10m0s (got 10ms)"}},
		{"interval too long", agent("{port: 1510, interval: 1h}"),
			[]string{"FILE:26: clusters[0].agent.interval: must be 100ms..10m0s (got 1h0m0s)"}},
		{"timeout over interval", agent("{port: 1510, interval: 1s, timeout: 2s}"),
			[]string{"FILE:26: clusters[0].agent.timeout: must not exceed interval 1s (got 2s)"}},
		{"zero timeout", agent("{port: 1510, timeout: 0s}"),
			[]string{"FILE:26: clusters[0].agent.timeout: must be > 0 (got 0s)"}},
		{"unknown key", agent("{port: 1510, intreval: 1s}"),
			[]string{"FILE:26: clusters[0].agent.intreval: unknown key (did you mean interval?)"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := problems(t, tt.src); !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}
