package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

// TestPassiveHealthTCP: with an active check too slow to notice for
// seconds (every 2 s, fall 5), be1's service stops and the clients'
// refused connects take it out at once: status and events say
// "passive: 3 connects refused", the clients see no failure (each
// refused connect is retried on be2), and the active check brings be1
// back once it listens again.
func TestPassiveHealthTCP(t *testing.T) {
	l := newLab(t)
	l.respond("be1")
	l.respond("be2")
	l.start("lb1", nodeOpts{preempt: true, extra: fmt.Sprintf(`clusters:
  - name: web
    vip: %s
    port: 8080
    health_check: {type: tcp, interval: 2s, timeout: 500ms, rise: 1, fall: 5}
    passive: {fail: 3, window: 10s}
    servers:
      - {name: be1, address: "198.18.0.21:8080"}
      - {name: be2, address: "198.18.0.22:8080"}
`, vip)})
	server := func(name string) api.Server {
		st, err := l.status("lb1")
		if err != nil || len(st.Clusters) == 0 {
			return api.Server{}
		}
		for _, s := range st.Clusters[0].Servers {
			if s.Name == name {
				return s
			}
		}
		return api.Server{}
	}
	l.waitFor("lb1 MASTER, both servers checked and up", 10*time.Second, func() bool {
		return l.state("lb1") == "MASTER" && l.holdsVIP("lb1") && server("be1").LastCheckAt != nil &&
			server("be1").Healthy && server("be2").LastCheckAt != nil && server("be2").Healthy
	})
	if got := l.servedBy(); got["be1"] == 0 || got["be2"] == 0 {
		t.Fatalf("served by %v, want both", got)
	}

	p := l.nodes["respond-be1"]
	_ = p.cmd.Process.Kill()
	<-p.done
	stopped := time.Now()
	got := l.servedBy() // 20 connects: about 10 meet be1's closed port
	if got["be2"] == 0 || len(got) != 1 {
		t.Errorf("with be1 stopped the clients were served by %v, want be2 alone", got)
	}
	var s api.Server
	l.waitFor("be1 down by passive health", 2*time.Second, func() bool {
		s = server("be1")
		return !s.Healthy
	})
	took := time.Since(stopped)
	t.Logf("be1 down %s after its service stopped: %q (last check %q)", took.Round(time.Millisecond), s.DownReason, s.LastCheck)
	if s.DownReason != "passive: 3 connects refused" {
		t.Errorf("be1's reason %q, want passive: 3 connects refused", s.DownReason)
	}
	out, err := exec.Command(binDir+"/tandem", "status", "--socket", l.dir+"/lb1.sock").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "passive: 3 connects refused") {
		t.Errorf("tandem status does not show the passive reason (%v):\n%s", err, out)
	}
	ev, err := exec.Command(binDir+"/tandem", "events", "--json", "--socket", l.dir+"/lb1.sock").Output()
	if err != nil {
		t.Fatalf("events: %v\n%s", err, ev)
	}
	var events []api.Event
	if err := json.Unmarshal(ev, &events); err != nil {
		t.Fatalf("events JSON: %v", err)
	}
	if !slices.ContainsFunc(events, func(e api.Event) bool {
		return e.Kind == "health" && e.Message == "web/be1 DOWN: passive: 3 connects refused"
	}) {
		t.Errorf("no passive health event:\n%s", ev)
	}
	// Out of rotation: no more refused connects.
	fails := server("be1").ConnectFailures
	if got := l.servedBy(); got["be2"] == 0 || len(got) != 1 {
		t.Errorf("be1 down: served by %v", got)
	}
	if n := server("be1").ConnectFailures; n != fails {
		t.Errorf("connects still sent to be1 once down: %d failures, then %d", fails, n)
	}

	// The active check (rise 1, every 2 s) brings be1 back.
	l.respond("be1")
	l.waitFor("be1 back up by the active check", 5*time.Second, func() bool {
		s = server("be1")
		return s.Healthy
	})
	if s.DownReason != "" {
		t.Errorf("be1 up with a down reason %q", s.DownReason)
	}
	l.waitFor("both servers serving again", 5*time.Second, func() bool {
		got := l.servedBy()
		return got["be1"] > 0 && got["be2"] > 0
	})
}
