package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

// Load feedback (issue 14, item 4): three servers whose agents say 10, 50
// and 90 get new connections, and hold open ones, in the proportions the
// README promises (weight × (100 − load) / 100: 90 : 50 : 10); an agent's
// -1 drains its server and keeps its open connections; a silent agent
// leaves the configured weight.

// agentServers are the three servers: be1, be2, and a second address
// of be2's.
var agentServers = []struct{ name, box, ip string }{
	{"be1", "be1", "198.18.0.21"},
	{"be2", "be2", "198.18.0.22"},
	{"be3", "be2", "198.18.0.23"},
}

// agentBG runs a long-lived process in box's namespace, killed by PID
// when the test ends (newLab's cleanup).
func (l *lab) agentBG(box, key string, args ...string) *proc {
	l.t.Helper()
	logPath := filepath.Join(l.dir, key+".log")
	f, err := os.Create(logPath)
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns(box)}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("%s in %s: %v", args[0], box, err)
	}
	p := &proc{cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	l.nodes[key] = p
	return p
}

// agentStop kills a process agentBG started and waits for it.
func (l *lab) agentStop(key string) {
	p := l.nodes[key]
	_ = p.cmd.Process.Kill()
	<-p.done
	delete(l.nodes, key)
}

// setAgentLoad sets what server's agent (the reference agent,
// scripts/tandem-agent, with -max-load 2 and its load average read from a
// file of the test's) answers from now on: a load 0..100, or -1 through
// its drain file. The load average file is replaced by a rename, so the
// agent never reads it half-written.
func (l *lab) setAgentLoad(server string, load int) {
	l.t.Helper()
	path, drain := filepath.Join(l.dir, server+".loadavg"), filepath.Join(l.dir, server+".drain")
	if load == -1 {
		if err := os.WriteFile(drain, nil, 0o644); err != nil {
			l.t.Fatal(err)
		}
		return
	}
	_ = os.Remove(drain)
	avg := fmt.Sprintf("%.2f 0.00 0.00 1/100 4242\n", float64(load)*2/100)
	if err := os.WriteFile(path+".new", []byte(avg), 0o644); err != nil {
		l.t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		l.t.Fatal(err)
	}
}

// agentsOf returns cluster's servers by name from lb1's status.
func (l *lab) agentsOf(cluster string) map[string]api.Server {
	st, err := l.status("lb1")
	if err != nil {
		return nil
	}
	out := map[string]api.Server{}
	for _, c := range st.Clusters {
		if c.Name == cluster {
			for _, s := range c.Servers {
				out[s.Name] = s
			}
		}
	}
	return out
}

// agentsSay reports whether lb1 shows, in both clusters, each server's
// agent in the given state with the given load ("no answer" has none).
func (l *lab) agentsSay(want map[string]string) bool {
	for _, cl := range []string{"conns", "held"} {
		srv := l.agentsOf(cl)
		for name, w := range want {
			a := srv[name].Agent
			if a == nil {
				return false
			}
			got := a.State
			if a.Load != nil {
				got = fmt.Sprintf("%s %d", a.State, *a.Load)
			}
			if got != w {
				return false
			}
		}
	}
	return true
}

func TestAgentLoadsShareConnections(t *testing.T) {
	needRoot(t)
	l := newLab(t)
	if out, err := exec.Command("ip", "-n", l.ns("be2"), "addr", "add", "198.18.0.23/24", "dev", "eth0").CombinedOutput(); err != nil {
		t.Fatalf("second address on be2: %v\n%s", err, out)
	}
	loads := map[string]int{"be1": 10, "be2": 50, "be3": 90}
	var servers8080, servers5222 strings.Builder
	for _, s := range agentServers {
		l.setAgentLoad(s.name, loads[s.name])
		l.agentBG(s.box, "agent-"+s.name, binDir+"/tandem-agent", "-listen", s.ip+":1510", "-max-load", "2",
			"-loadavg", filepath.Join(l.dir, s.name+".loadavg"), "-drain-file", filepath.Join(l.dir, s.name+".drain"))
		l.agentBG(s.box, "respond-"+s.name, binDir+"/labtools", "respond", "-listen", s.ip+":8080", "-name", s.name)
		l.agentBG(s.box, "echo-"+s.name, binDir+"/labtools", "echo", "-raw", "-idle", "5m", "-listen", s.ip+":5222")
		fmt.Fprintf(&servers8080, "      - {name: %s, address: \"%s:8080\"}\n", s.name, s.ip)
		fmt.Fprintf(&servers5222, "      - {name: %s, address: \"%s:5222\"}\n", s.name, s.ip)
	}
	// A poll has its whole interval: on a loaded machine a shorter timeout
	// would read as a silent agent (a real change of weight and an event).
	agent := "agent: {port: 1510, interval: 500ms, timeout: 500ms}"
	l.start("lb1", nodeOpts{preempt: true, extra: fmt.Sprintf(`clusters:
  - name: conns
    vip: %[1]s
    port: 8080
    algorithm: weighted_round_robin
    %[2]s
    health_check: {type: tcp, interval: 200ms, timeout: 150ms}
    servers:
%[3]s  - name: held
    vip: %[1]s
    port: 5222
    algorithm: least_conn
    %[2]s
    servers:
%[4]s`, vip, agent, servers8080.String(), servers5222.String())})
	l.waitFor("lb1 MASTER, its agents polled: loads 10, 50, 90", 15*time.Second, func() bool {
		return l.state("lb1") == "MASTER" && l.holdsVIP("lb1") &&
			l.agentsSay(map[string]string{"be1": "load 10", "be2": "load 50", "be3": "load 90"})
	})
	want := map[string]float64{"be1": 0.6, "be2": 1.0 / 3, "be3": 1.0 / 15}

	// New connections, weighted_round_robin: one period is 15
	// connections (9, 5, 1), so the shares are exact but for the last,
	// partial period.
	s := l.agentProbe(3 * time.Second)
	if s.Failed != 0 || s.OK < 150 {
		t.Fatalf("probe: %d ok, %d failed; want at least 150 and no failure", s.OK, s.Failed)
	}
	for name, w := range want {
		share := float64(s.Servers[name]) / float64(s.OK)
		if math.Abs(share-w) > 15.0/float64(s.OK) {
			t.Errorf("weighted_round_robin: %s (load %d) got %d of %d new connections (%.3f), want %.3f (within one period)",
				name, loads[name], s.Servers[name], s.OK, share, w)
		}
	}
	t.Logf("weighted_round_robin, loads 10/50/90: %d new connections: be1 %d, be2 %d, be3 %d (want 60%%, 33%%, 7%%)",
		s.OK, s.Servers["be1"], s.Servers["be2"], s.Servers["be3"])

	// Open connections, least_conn: 150 held open settle as 90, 50, 10.
	hold, ready := l.agentHold(150)
	if ready != "ready 150 0" {
		t.Fatalf("hold: %q, want all 150 connections echoed", ready)
	}
	held := l.agentsOf("held")
	for name, w := range want {
		if n := held[name].ActiveConns; math.Abs(float64(n)-150*w) > 3 {
			t.Errorf("least_conn: %s (load %d) holds %d of 150 connections, want %.0f ± 3", name, loads[name], n, 150*w)
		}
	}
	t.Logf("least_conn, loads 10/50/90: 150 open connections: be1 %d, be2 %d, be3 %d",
		held["be1"].ActiveConns, held["be2"].ActiveConns, held["be3"].ActiveConns)

	// -1: be3 drains in both clusters; its open connections stay.
	be3Held := held["be3"].ActiveConns
	l.setAgentLoad("be3", -1)
	l.waitFor("be3 drained by its agent", 5*time.Second, func() bool {
		return l.agentsSay(map[string]string{"be3": "drain -1"})
	})
	if a := l.agentsOf("conns")["be3"]; a.Agent.Reason != "agent: -1" || !a.Healthy || a.Admin != "enabled" {
		t.Errorf("be3 drained: %+v %+v, want reason \"agent: -1\", healthy and enabled", a, *a.Agent)
	}
	if s := l.agentProbe(time.Second); s.Servers["be3"] != 0 || s.Failed != 0 || s.OK == 0 {
		t.Errorf("while be3 drains: %+v, want no new connection to be3 and no failure", s)
	}
	if n := l.agentsOf("held")["be3"].ActiveConns; n != be3Held {
		t.Errorf("be3's open connections went from %d to %d while it drained, want them kept", be3Held, n)
	}
	_ = hold.cmd.Process.Kill()
	<-hold.done
	delete(l.nodes, "hold")

	// A silent agent: be2 weighs as configured (1, as load 0 would).
	l.agentStop("agent-be2")
	l.waitFor("be2's agent shown as not answering", 5*time.Second, func() bool {
		return l.agentsSay(map[string]string{"be2": "no answer"})
	})
	if a := l.agentsOf("conns")["be2"].Agent; a.Weight != 1 || !strings.Contains(a.Detail, "refused") {
		t.Errorf("be2 without its agent: %+v, want weight 1 and connection refused", *a)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	evs, err := api.NewClient(filepath.Join(l.dir, "lb1.sock")).Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var agentEvents []string
	for _, e := range evs {
		if e.Kind == "agent" {
			agentEvents = append(agentEvents, e.Message)
		}
	}
	joined := strings.Join(agentEvents, "\n")
	for _, want := range []string{"conns/be3 agent: -1: draining", "held/be3 agent: -1: draining", "conns/be2 agent does not answer"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no event %q among the agent events:\n%s", want, joined)
		}
	}
	// Only changes make events: the first readings were plain loads, so
	// 2 clusters × (be3's drain + be2's silence).
	if len(agentEvents) != 4 {
		t.Errorf("%d agent events, want 4 (changes only, not every poll):\n%s", len(agentEvents), joined)
	}
}

// agentProbe connects to the VIP's port 8080 every 10 ms for d, a new
// connection each, and returns who answered.
func (l *lab) agentProbe(d time.Duration) summary {
	l.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", l.ns("client"), binDir+"/labtools", "probe", "-q",
		"-target", vip+":8080", "-interval", "10ms", "-timeout", "200ms", "-duration", d.String()).Output()
	if err != nil {
		l.t.Fatalf("probe: %v", err)
	}
	var s summary
	if err := json.Unmarshal(out, &s); err != nil {
		l.t.Fatalf("probe summary: %v\n%s", err, out)
	}
	return s
}

// agentHold opens n connections to the VIP's port 5222, one at a time,
// and holds them (at most a minute); it returns once they are open, with
// labtools hold's "ready OK FAILED" line.
func (l *lab) agentHold(n int) (*proc, string) {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.ns("client"), binDir+"/labtools", "hold",
		"-target", vip+":5222", "-n", fmt.Sprint(n), "-c", "1", "-timeout", "5s", "-max", "60s")
	out, err := cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: os.DevNull, done: make(chan error, 1)}
	l.nodes["hold"] = p
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Scan()
		line <- strings.TrimSpace(sc.Text())
		for sc.Scan() {
		}
		p.done <- cmd.Wait()
	}()
	select {
	case s := <-line:
		return p, s
	case <-time.After(30 * time.Second):
		l.t.Fatal("labtools hold: not ready after 30 s")
	}
	return p, ""
}
