package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const stickyClients = 500

// addClients gives the client namespace 500 addresses from 198.18.2.0/23
// and the boxes an on-link route back to them.
func (l *lab) addClients() {
	l.t.Helper()
	var batch strings.Builder
	for i := 1; i <= stickyClients; i++ {
		fmt.Fprintf(&batch, "addr add 198.18.%d.%d/23 dev eth0\n", 2+i/256, i%256)
	}
	path := filepath.Join(l.dir, "clients.batch")
	if err := os.WriteFile(path, []byte(batch.String()), 0o644); err != nil {
		l.t.Fatal(err)
	}
	if out, err := exec.Command("ip", "-n", l.ns("client"), "-batch", path).CombinedOutput(); err != nil {
		l.t.Fatalf("client addresses: %v\n%s", err, out)
	}
	for _, box := range []string{"lb1", "lb2"} {
		if out, err := exec.Command("ip", "-n", l.ns(box), "route", "add", "198.18.2.0/23", "dev", "eth0").CombinedOutput(); err != nil {
			l.t.Fatalf("route in %s: %v\n%s", box, err, out)
		}
	}
}

// clients makes one request from each sticky client and returns who
// answered each ("" for a failure).
func (l *lab) clients() map[string]string {
	l.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", l.ns("client"), binDir+"/labtools", "clients",
		"-target", "http://"+vip+"/", "-from", "198.18.2.1", "-count", fmt.Sprint(stickyClients)).Output()
	if err != nil {
		l.t.Fatalf("clients: %v", err)
	}
	m := map[string]string{}
	if err := json.Unmarshal(out, &m); err != nil {
		l.t.Fatalf("clients output: %v", err)
	}
	return m
}

// compare counts clients answered by their recorded server, by another,
// and failed.
func compare(before, after map[string]string) (same, moved, failed int) {
	for a, s := range before {
		switch after[a] {
		case s:
			same++
		case "":
			failed++
		default:
			moved++
		}
	}
	return
}

func (l *lab) inSync(box string) bool {
	st, err := l.status(box)
	return err == nil && st.Persistence.State == "IN SYNC"
}

func TestStickyClientsKeepTheirServerAcrossFailover(t *testing.T) {
	l := newLab(t)
	l.nginx("be1")
	l.nginx("be2")
	l.addClients()
	o := nodeOpts{preempt: true, extra: fmt.Sprintf(`clusters:
  - name: web
    vip: %s
    port: 80
    algorithm: round_robin
    persistence: {mode: source_ip, mask: 32, timeout: 10m}
    health_check: {type: http, path: /, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}
    servers:
      - {name: be1, address: "198.18.0.21:80"}
      - {name: be2, address: "198.18.0.22:80"}
`, vip)}
	l.start("lb1", o)
	l.start("lb2", o)
	l.waitFor("lb1 MASTER, both in sync", 15*time.Second, func() bool {
		return l.state("lb1") == "MASTER" && l.holdsVIP("lb1") && !l.holdsVIP("lb2") && l.inSync("lb1") && l.inSync("lb2")
	})

	first := l.clients()
	per := map[string]int{}
	for _, s := range first {
		per[s]++
	}
	if per[""] != 0 || per["be1"] < 200 || per["be2"] < 200 {
		t.Fatalf("first round: %v, want all %d answered, spread over both", per, stickyClients)
	}
	l.waitFor("lb2 to hold every entry", 5*time.Second, func() bool {
		st, err := l.status("lb2")
		return err == nil && st.Persistence.Entries >= stickyClients
	})

	// Pull the primary's cable: lb2 serves every client from its copy.
	if err := l.script("pull", "lb1"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb2 MASTER", 5*time.Second, func() bool { return l.state("lb2") == "MASTER" && l.holdsVIP("lb2") })
	if same, moved, failed := compare(first, l.clients()); same != stickyClients {
		t.Fatalf("after the cable pull: %d kept their server, %d moved, %d failed; want all %d kept",
			same, moved, failed, stickyClients)
	}

	// Plug it back: lb1 waits for lb2's table, then preempts.
	if err := l.script("plug", "lb1"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb1 to preempt once in sync", 15*time.Second, func() bool {
		return l.state("lb1") == "MASTER" && l.state("lb2") == "BACKUP" && l.holdsVIP("lb1") && !l.holdsVIP("lb2")
	})
	st, _ := l.status("lb1")
	held := false
	for _, tr := range st.Transitions {
		held = held || strings.Contains(tr.Reason, "preempting")
	}
	if !held {
		t.Errorf("lb1 did not preempt: %+v", st.Transitions)
	}
	if same, moved, failed := compare(first, l.clients()); same != stickyClients {
		t.Fatalf("after plugging back: %d kept their server, %d moved, %d failed; want all %d kept",
			same, moved, failed, stickyClients)
	}

	// Kill be1: only its clients move.
	ng := l.nodes["nginx-be1"]
	_ = ng.cmd.Process.Signal(syscall.SIGTERM)
	<-ng.done
	l.waitFor("be1 down", 5*time.Second, func() bool {
		st, err := l.status("lb1")
		return err == nil && !st.Clusters[0].Servers[0].Healthy
	})
	after := l.clients()
	for a, s := range first {
		switch {
		case s == "be2" && after[a] != "be2":
			t.Fatalf("client %s of be2 moved to %q when be1 died", a, after[a])
		case s == "be1" && after[a] != "be2":
			t.Fatalf("client %s of dead be1 answered by %q, want be2", a, after[a])
		}
	}
	lst, err := exec.Command(binDir+"/tandem", "persistence", "list", "web", "--top", "5",
		"--socket", filepath.Join(l.dir, "lb1.sock")).CombinedOutput()
	if err != nil || !strings.Contains(string(lst), "198.18.") {
		t.Errorf("persistence list: %v\n%s", err, lst)
	}
}
