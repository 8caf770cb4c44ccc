package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/dataplane"
)

// dnsmasq runs a real dnsmasq in box's namespace answering
// who.lab. A with an address that names the box (be1 → 198.18.1.1,
// be2 → 198.18.1.2): no upstream, no files, logs in the test folder.
func (l *lab) dnsmasq(box, answer string) *proc {
	l.t.Helper()
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		l.t.Skip("needs dnsmasq: run scripts/deps.sh")
	}
	cmd := exec.Command("ip", "netns", "exec", l.ns(box), "dnsmasq", "--keep-in-foreground", "--no-daemon",
		"--no-resolv", "--no-hosts", "--no-poll", "--conf-file=/dev/null", "--port=53",
		"--listen-address=0.0.0.0", "--bind-interfaces", "--user=root", "--pid-file="+filepath.Join(l.dir, box+"-dnsmasq.pid"),
		"--address=/who.lab/"+answer, "--log-facility="+filepath.Join(l.dir, box+"-dnsmasq.log"))
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("dnsmasq in %s: %v", box, err)
	}
	p := &proc{cmd: cmd, log: filepath.Join(l.dir, box+"-dnsmasq.log"), done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	l.nodes["dnsmasq-"+box] = p
	return p
}

// dig asks who.lab through the VIP n times, each from a new source port,
// and counts the answers ("FAIL" for none).
func (l *lab) dig(n int) map[string]int {
	l.t.Helper()
	script := fmt.Sprintf(`for i in $(seq 1 %d); do dig +short +time=1 +tries=1 @%s who.lab A || true; done`, n, vip)
	out, _ := exec.Command("ip", "netns", "exec", l.ns("client"), "sh", "-c", script).Output()
	got := map[string]int{}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, line := range lines {
		switch a := strings.TrimSpace(line); {
		case a == "198.18.1.1":
			got["be1"]++
		case a == "198.18.1.2":
			got["be2"]++
		default:
			got["FAIL"]++
		}
	}
	if missing := n - len(lines); missing > 0 {
		got["FAIL"] += missing
	}
	return got
}

func TestDNSOverUDPThroughTheVIP(t *testing.T) {
	l := newLab(t)
	l.dnsmasq("be1", "198.18.1.1")
	l.dnsmasq("be2", "198.18.1.2")
	o := nodeOpts{preempt: true, extra: fmt.Sprintf(`clusters:
  - name: dns
    vip: %s
    port: 53
    protocol: udp
    algorithm: round_robin
    # both boxes' addresses: each binds its upstream sockets to its own
    source_addresses: [198.18.0.11, 198.18.0.12]
    health_check: {type: dns, query: who.lab, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}
    servers:
      - {name: be1, address: "198.18.0.21:53"}
      - {name: be2, address: "198.18.0.22:53"}
`, vip)}
	l.start("lb1", o)
	l.start("lb2", o)
	l.waitFor("lb1 MASTER with healthy DNS servers", 10*time.Second, func() bool {
		st, err := l.status("lb1")
		// (lb2 may keep the VIP a moment: the make-before-break overlap.)
		if err != nil || st.State != "MASTER" || !l.holdsVIP("lb1") || l.holdsVIP("lb2") || len(st.Clusters) == 0 {
			return false
		}
		for _, s := range st.Clusters[0].Servers {
			if !s.Healthy {
				return false
			}
		}
		return true
	})

	got := l.dig(20)
	t.Logf("20 queries: %v", got)
	if got["FAIL"] != 0 || got["be1"] < 5 || got["be2"] < 5 {
		t.Fatalf("dig through the UDP VIP: %v, want every query answered by both servers in turn", got)
	}
	st, _ := l.status("lb1")
	if c := st.Clusters[0]; c.DatagramsIn < 20 || c.DatagramsOut < 20 {
		t.Errorf("datagrams in/out = %d/%d, want ≥ 20 each", c.DatagramsIn, c.DatagramsOut)
	}
	// The node's flow budget, shared by its UDP clusters: 150,000 with
	// io_uring to park sockets in, else the 15,000 descriptor share.
	udps := 0
	for _, c := range st.Clusters {
		if c.Protocol == "udp" {
			udps++
		}
	}
	budget := int64(dataplane.DefaultMaxParkedFlows)
	if err := dataplane.UDPParking(); err != nil {
		budget = dataplane.DefaultMaxFlows
	}
	if c := st.Clusters[0]; c.Protocol != "udp" || c.MaxFlows != budget/int64(udps) {
		t.Errorf("%s cluster: max_flows = %d, want %d/%d", c.Protocol, c.MaxFlows, budget, udps)
	}

	// A backend stopped: queries carry on on the other.
	dm := l.nodes["dnsmasq-be1"]
	_ = dm.cmd.Process.Signal(syscall.SIGTERM)
	<-dm.done
	l.waitFor("be1 marked down", 5*time.Second, func() bool {
		st, err := l.status("lb1")
		return err == nil && !st.Clusters[0].Servers[0].Healthy
	})
	if got := l.dig(10); got["be2"] != 10 {
		t.Fatalf("with be1 stopped: %v, want all 10 answered by be2", got)
	}

	// A cable pull: queries resume through lb2.
	if err := l.script("pull", "lb1"); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lb2 MASTER", 5*time.Second, func() bool { return l.state("lb2") == "MASTER" && l.holdsVIP("lb2") })
	l.waitFor("lb2 to see be1 down too", 5*time.Second, func() bool {
		st, err := l.status("lb2")
		return err == nil && !st.Clusters[0].Servers[0].Healthy
	})
	if got := l.dig(10); got["be2"] != 10 {
		t.Fatalf("after the cable pull: %v, want all 10 answered through lb2", got)
	}
	// Each box bound its upstream sockets to its own source address.
	for box, own := range map[string]string{"lb1": "198.18.0.11", "lb2": "198.18.0.12"} {
		b, _ := os.ReadFile(l.nodes[box].log)
		if !strings.Contains(string(b), `source addresses of the other box are left out" node=`+box+` component=dataplane cluster=dns using=[`+own+`]`) {
			t.Errorf("%s's log does not show it using source address %s alone:\n%s", box, own, b)
		}
	}
}
