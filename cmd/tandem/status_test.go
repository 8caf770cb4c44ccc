package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

func TestPrintSplitBrain(t *testing.T) {
	var b bytes.Buffer
	printSplitBrain(&b, api.SplitBrain{})
	if b.Len() != 0 {
		t.Errorf("nothing to show, printed %q", b.String())
	}
	printSplitBrain(&b, api.SplitBrain{ARPRead: 40, Rivals: 2,
		Witness: &api.Witness{Address: "198.18.0.1", Sent: 10, Answered: 4, LastAnswerMs: 180, Reachable: false}})
	for _, want := range []string{
		"Witness  198.18.0.1 NOT ANSWERING (last answer 180ms ago; 10 pings, 4 answers)",
		"ARP      40 frames read, 0 malformed; 2 announcements of our VIPs by another box",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in:\n%s", want, b.String())
		}
	}
}

// TestRenderCheckWarning: a server whose certificate is about to expire
// shows the check's warning in status, and its JSON carries the days.
func TestRenderCheckWarning(t *testing.T) {
	at := time.Now()
	days := 5
	srv := api.Server{Name: "mail1", Address: "198.18.0.31:993", Healthy: true, Admin: "enabled",
		LastCheck: "TLS handshake in 1.2ms, certificate expires in 5 days", LastCheckOK: true, LastCheckAt: &at,
		CheckWarning: "certificate expires in 5 days (2026-03-01 12:00 UTC)", CertExpiresInDays: &days}
	st := &api.Status{Node: "lb1", Now: at, Clusters: []api.Cluster{{Name: "imaps", VIP: "198.18.0.100", Port: 993,
		Protocol: "tcp", Algorithm: "round_robin", Servers: []api.Server{srv}}}}
	var b bytes.Buffer
	renderStatus(&b, st)
	if !strings.Contains(b.String(), "certificate expires in 5 days; WARNING: certificate expires in 5 days (2026-03-01 12:00 UTC)") {
		t.Errorf("no warning in:\n%s", b.String())
	}
	j, err := json.Marshal(srv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(j), `"check_warning":"certificate expires in 5 days (2026-03-01 12:00 UTC)","cert_expires_in_days":5`) {
		t.Errorf("JSON: %s", j)
	}
}

// TestRenderPassiveReason: a server passive health took out shows why,
// before its last (passing) check, and a UDP cluster its retries.
func TestRenderPassiveReason(t *testing.T) {
	at := time.Now()
	srv := api.Server{Name: "dns1", Address: "198.18.0.31:53", Healthy: false, Admin: "enabled",
		LastCheck: "answer in 0.4ms", LastCheckOK: true, LastCheckAt: &at, DownReason: "passive: 3 requests unanswered"}
	st := &api.Status{Node: "lb1", Now: at, Clusters: []api.Cluster{{Name: "dns", VIP: "198.18.0.100", Port: 53,
		Protocol: "udp", Algorithm: "round_robin", Retries: 4, Unanswered: 5, Servers: []api.Server{srv}}}}
	var b bytes.Buffer
	renderStatus(&b, st)
	for _, want := range []string{"DOWN", "passive: 3 requests unanswered; last check: answer in 0.4ms",
		"retried 4 of 5 unanswered"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in:\n%s", want, b.String())
		}
	}
}
