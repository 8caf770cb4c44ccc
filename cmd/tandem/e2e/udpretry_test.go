package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

// retryReport is one protocol's part of labtools udpretry's output.
type retryReport struct {
	Sent, Answered, Failed, Duplicates, Bad int
	ByServer                                map[string]int `json:"by_server"`
	P50MS                                   float64        `json:"p50_ms"`
	Slow                                    int
	AddedP99MS                              float64 `json:"added_p99_ms"`
	AddedMaxMS                              float64 `json:"added_max_ms"`
	FailedAtMS                              []float64
}

// udpRetryClusters is the DNS and RADIUS clusters of the retry tests:
// active checks every second, two failures to go down, so the retry,
// not the check, is what saves the queries; retry_timeout is left to its
// default (100ms for dns and radius checks).
func udpRetryClusters() string {
	return fmt.Sprintf(`clusters:
  - name: dns
    vip: %[1]s
    port: 53
    protocol: udp
    health_check: {type: dns, query: who.lab, interval: 1s, timeout: 300ms, rise: 2, fall: 2}
    servers:
      - {name: be1, address: "198.18.0.21:53"}
      - {name: be2, address: "198.18.0.22:53"}
  - name: radius
    vip: %[1]s
    port: 1812
    protocol: udp
    health_check: {type: radius, secret: %[2]s, interval: 1s, timeout: 300ms, rise: 2, fall: 2}
    servers:
      - {name: be1, address: "198.18.0.21:1812"}
      - {name: be2, address: "198.18.0.22:1812"}
`, vip, radiusSecret)
}

// TestUDPRetryNoQueryLost: DNS and RADIUS clients probe the VIP every
// 10 ms, each request waiting 200 ms, over two flows each (round robin
// puts one on each server); then all of be1's services go: first stopped
// (SIGTERM: the kernel answers with port unreachable, and the retry
// follows at once), then, after be1 is back, frozen (SIGSTOP: silence,
// each lost request waits for retry_timeout). No request fails either
// time: the unanswered ones are re-sent to be2, which answers each once.
func TestUDPRetryNoQueryLost(t *testing.T) {
	needRadius(t)
	l := newLab(t)
	answer := map[string]string{"be1": "198.18.1.1", "be2": "198.18.1.2"}
	for _, be := range []string{"be1", "be2"} {
		l.dnsmasq(be, answer[be])
		l.radiusServer(be)
	}
	l.start("lb1", nodeOpts{preempt: true, extra: udpRetryClusters()})
	allUp := func() bool {
		st, err := l.status("lb1")
		if err != nil || st.State != "MASTER" || !l.holdsVIP("lb1") || len(st.Clusters) != 2 {
			return false
		}
		for _, c := range st.Clusters {
			for _, s := range c.Servers {
				if !s.Healthy {
					return false
				}
			}
		}
		return true
	}
	l.waitFor("lb1 MASTER, every server up", 15*time.Second, allUp)
	var retries [2]uint64
	for _, how := range []string{"stopped", "frozen"} {
		if how == "frozen" { // be1 back first
			l.dnsmasq("be1", answer["be1"])
			l.radiusServer("be1")
			l.waitFor("be1 back up", 10*time.Second, allUp)
		}
		rep, st := l.retryRound(t, how)
		for i, proto := range []string{"dns", "radius"} {
			r, c := rep[proto], st.Clusters[i]
			t.Logf("%s, %s: %+v", how, proto, r)
			t.Logf("%s, %s cluster: retries %d unanswered %d refused %v", how, c.Name, c.Retries, c.Unanswered, c.Refused)
			be1, be2 := "be1", "be2"
			if proto == "dns" {
				be1, be2 = answer["be1"], answer["be2"]
			}
			switch {
			case r.Sent != 250 || r.Failed != 0:
				t.Errorf("%s, %s: %d of %d requests failed (at %v ms)", how, proto, r.Failed, r.Sent, r.FailedAtMS)
			case r.Duplicates != 0:
				t.Errorf("%s, %s: %d duplicate answers", how, proto, r.Duplicates)
			case r.ByServer[be1] == 0 || r.ByServer[be2] == 0:
				t.Errorf("%s, %s: answers by server %v: want both before be1 went", how, proto, r.ByServer)
			case c.Retries == retries[i]:
				t.Errorf("%s, %s: no retries counted: no request met be1 going", how, proto)
			}
			retries[i] = c.Retries
		}
	}
}

// retryRound runs labtools udpretry against both clusters and, once its
// first requests were answered, stops or freezes be1's dnsmasq and
// FreeRADIUS; it returns the report and lb1's status after.
func (l *lab) retryRound(t *testing.T, how string) (map[string]retryReport, *api.Status) {
	t.Helper()
	ready := filepath.Join(l.dir, "probe-ready-"+how)
	var out, errb bytes.Buffer
	probe := exec.Command("ip", "netns", "exec", l.ns("client"), binDir+"/labtools", "udpretry",
		"-dns", vip+":53", "-radius", vip+":1812", "-secret", radiusSecret, "-interval", "10ms",
		"-timeout", "200ms", "-count", "250", "-flows", "2", "-warm", "20", "-ready", ready)
	probe.Stdout, probe.Stderr = &out, &errb
	if err := probe.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- probe.Wait() }()
	t.Cleanup(func() {
		if probe.ProcessState == nil {
			_ = probe.Process.Kill()
			<-done
		}
	})
	l.waitFor("the probes to be answered", 10*time.Second, func() bool {
		_, err := os.Stat(ready)
		return err == nil
	})
	went := time.Now()
	if how == "stopped" {
		dm := l.nodes["dnsmasq-be1"]
		_ = dm.cmd.Process.Signal(syscall.SIGTERM)
		l.stopRadius("be1")
		<-dm.done
		delete(l.nodes, "dnsmasq-be1")
	} else {
		for _, name := range []string{"dnsmasq-be1", "freeradius-be1"} {
			if err := l.nodes[name].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatalf("freeze %s: %v", name, err)
			}
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("udpretry: %v\n%s", err, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("udpretry did not end within 20 s")
	}
	t.Logf("the probes ended %s after be1's services were %s", time.Since(went).Round(time.Millisecond), how)
	var rep map[string]retryReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("udpretry output: %v\n%s", err, out.String())
	}
	st, err := l.status("lb1")
	if err != nil {
		t.Fatal(err)
	}
	return rep, st
}
