package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

// TestRenderAgent: status shows each server's agent: the load and the
// weight it gives, a drain with its reason in the ADMIN column, and an
// agent that does not answer.
func TestRenderAgent(t *testing.T) {
	at := time.Now()
	l50, drain := 50, -1
	srv := func(name string, a *api.ServerAgent) api.Server {
		return api.Server{Name: name, Address: "198.18.0.21:389", Healthy: true, Admin: "enabled",
			LastCheck: "found 2 entries in 1.0ms", LastCheckOK: true, LastCheckAt: &at, Agent: a}
	}
	st := &api.Status{Node: "lb1", Now: at, Clusters: []api.Cluster{{Name: "ldap", VIP: "198.18.0.100", Port: 389,
		Protocol: "tcp", Algorithm: "least_conn", Servers: []api.Server{
			srv("ldap1", &api.ServerAgent{State: "load", Load: &l50, Weight: 0.5}),
			srv("ldap2", &api.ServerAgent{State: "drain", Load: &drain, Reason: "agent: -1"}),
			srv("ldap3", &api.ServerAgent{State: "no answer", Detail: "connect: connection refused", Weight: 1}),
		}}}}
	var b bytes.Buffer
	renderStatus(&b, st)
	for _, want := range []string{
		"found 2 entries in 1.0ms; agent: load 50, weight 0.50",
		"enabled (agent: -1)",
		"agent: -1, draining",
		"agent: no answer (connect: connection refused), weight as configured",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in:\n%s", want, b.String())
		}
	}
}
