package main

import (
	"fmt"

	"github.com/tandem-lb/tandem/pkg/api"
)

// agentColumns adds a server's load agent to its ADMIN and LAST CHECK
// columns: "enabled (agent: -1)" while its agent drains it, and
// "agent: load 50, weight 0.50", "agent: no answer (...), weight as
// configured" after the check.
func agentColumns(s api.Server, check string) (admin, withAgent string) {
	admin = s.Admin
	a := s.Agent
	if a == nil {
		return admin, check
	}
	if a.Reason != "" {
		admin += " (" + a.Reason + ")"
	}
	var says string
	switch a.State {
	case "load":
		says = fmt.Sprintf("agent: load %d, weight %.2f", *a.Load, a.Weight)
	case "drain":
		says = "agent: -1, draining"
	case "no answer":
		says = fmt.Sprintf("agent: no answer (%s), weight as configured", a.Detail)
	default:
		says = "agent: not polled yet"
	}
	if check == "-" {
		return admin, says
	}
	return admin, check + "; " + says
}
