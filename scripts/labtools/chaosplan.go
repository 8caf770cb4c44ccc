package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The chaos suite's plan: the pair's configuration with the features it
// runs, and the seeded list of faults.

// ---- pair configuration

func (d *driver) config(box string, feats map[string]bool) string {
	prio, self, peer, hbSelf, hbPeer := 150, "198.18.0.11", "198.18.0.12", "198.19.0.11", "198.19.0.12"
	if box == "lb2" {
		prio, self, peer, hbSelf, hbPeer = 100, "198.18.0.12", "198.18.0.11", "198.19.0.12", "198.19.0.11"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `node:
  name: %s
  api_socket: %s/%s.sock
  log_level: info
cluster:
  bind: %s:7946
  peers: [%s:7946]
  secret_file: %s/cluster.key
`, box, d.o.out, box, self, peer, d.o.out)
	if feats["heartbeat_paths"] {
		fmt.Fprintf(&b, "  heartbeat_paths: [{bind: \"%s:7946\", peer: \"%s:7946\"}]\n", hbSelf, hbPeer)
	}
	fmt.Fprintf(&b, `failover:
  interface: eth0
  priority: %d
  preempt: true
  advert_interval: %s
  vips: [%s]
`, prio, advert, strings.Join(vipCIDRs, ", "))
	if feats["witness"] {
		fmt.Fprintf(&b, "  witness: %s\n", witness)
	}
	if feats["link_holddown"] {
		b.WriteString("  link_holddown: 1s\n")
	}
	fmt.Fprintf(&b, `clusters:
  - name: web
    vip: %s
    port: 80
    protocol: tcp
    algorithm: round_robin
    persistence: {mode: source_ip, mask: 32, timeout: 10m}
    health_check: {type: http, path: /, expect_status: 200, interval: 120ms, timeout: 120ms, rise: 1, fall: 2}
    servers:
      - {name: be1, address: "198.18.0.21:80"}
      - {name: be2, address: "198.18.0.22:80"}
  - name: udp
    vip: %s
    port: %s
    protocol: udp
    algorithm: round_robin
    persistence: {mode: source_ip, mask: 32, timeout: 10m}
    health_check: {type: udp, send: "health", expect_body: "^be", interval: 120ms, timeout: 120ms, rise: 1, fall: 2}
    servers:
      - {name: be1, address: "198.18.0.21:%s"}
      - {name: be2, address: "198.18.0.22:%s"}
`, vipTCP, vipUDP, udpPort, udpPort, udpPort)
	return b.String()
}

// writeConfigs writes both configs with feats and validates them.
func (d *driver) writeConfigs(feats map[string]bool) error {
	for _, box := range []string{"lb1", "lb2"} {
		p := filepath.Join(d.o.out, box+".yaml")
		if err := os.WriteFile(p, []byte(d.config(box, feats)), 0o644); err != nil {
			return err
		}
		out, err := exec.Command(d.o.tandem, "validate", "--config", p).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s", strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// chooseFeatures settles which features the pair runs with.
func (d *driver) chooseFeatures() error {
	want := map[string]bool{}
	switch d.o.features {
	case "all", "auto":
		for _, f := range allFeatures {
			want[f] = true
		}
	case "none", "":
	default:
		for _, f := range strings.Split(d.o.features, ",") {
			f = strings.TrimSpace(f)
			ok := false
			for _, g := range allFeatures {
				ok = ok || g == f
			}
			if !ok {
				return usageError("unknown feature " + f)
			}
			want[f] = true
		}
	}
	if d.o.features == "auto" {
		for _, f := range allFeatures {
			if err := d.writeConfigs(map[string]bool{f: true}); err != nil {
				d.say("feature %s: not known to this tandem, running without it (%s)", f, firstLine(err.Error()))
				want[f] = false
			}
		}
	}
	if err := d.writeConfigs(want); err != nil {
		return fmt.Errorf("the pair's configs do not validate with features %v (CHAOS_FEATURES=auto runs with what this binary knows):\n%v", keys(want), err)
	}
	d.features = want
	return nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func keys(m map[string]bool) []string {
	var out []string
	for k, v := range m {
		if v {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// ---- the plan

type chaosStep struct {
	Event  string          `json:"event"`
	Target string          `json:"target"` // lb1|lb2|be1|be2|master|""
	Pre    time.Duration   `json:"pre"`    // quiet time before the fault
	Hold   time.Duration   `json:"hold"`   // how long the fault lasts
	Flaps  []time.Duration `json:"flaps,omitempty"`
}

func (s chaosStep) String() string {
	switch s.Event {
	case "flap":
		return fmt.Sprintf("flap %s (10 changes in %.1fs)", s.Target, s.Flaps[len(s.Flaps)-1].Seconds())
	case "partition", "hbcut":
		return fmt.Sprintf("%s for %.1fs", s.Event, s.Hold.Seconds())
	}
	return fmt.Sprintf("%s %s for %.1fs", s.Event, s.Target, s.Hold.Seconds())
}

// Plan is the seeded list of faults: what, on which box, when and for how
// long. The same seed and counts give the same plan.
func Plan(seed uint64, pulls, kills, isolates int) []chaosStep {
	r := rand.New(rand.NewPCG(seed, 0x7a6e64656d))
	dur := func(lo, hi time.Duration) time.Duration {
		return (lo + time.Duration(r.Int64N(int64(hi-lo)))).Round(time.Millisecond)
	}
	lb := func() string { return []string{"lb1", "lb2"}[r.IntN(2)] }
	var ss []chaosStep
	for range pulls {
		ss = append(ss, chaosStep{Event: "pull", Target: lb(), Hold: dur(200*time.Millisecond, 2500*time.Millisecond)})
	}
	for range kills {
		ss = append(ss, chaosStep{Event: "kill", Target: lb(), Hold: dur(time.Second, 2500*time.Millisecond)})
	}
	// 10 changes (down, up, ...) in about 5 s: 500 ms apart, ±100 ms
	var fl []time.Duration
	for i := range 10 {
		fl = append(fl, time.Duration(i)*500*time.Millisecond+dur(0, 200*time.Millisecond)-100*time.Millisecond)
	}
	fl[0] = 0
	ss = append(ss, chaosStep{Event: "flap", Target: "master", Flaps: fl})
	ss = append(ss, chaosStep{Event: "partition", Hold: dur(1500*time.Millisecond, 3*time.Second)})
	ss = append(ss, chaosStep{Event: "hbcut", Hold: dur(1500*time.Millisecond, 3*time.Second)})
	for range isolates {
		ss = append(ss, chaosStep{Event: "isolate", Target: lb(), Hold: dur(1500*time.Millisecond, 3*time.Second)})
	}
	ss = append(ss, chaosStep{Event: "backend", Target: []string{"be1", "be2"}[r.IntN(2)], Hold: dur(time.Second, 2500*time.Millisecond)})
	r.Shuffle(len(ss), func(i, j int) { ss[i], ss[j] = ss[j], ss[i] })
	for i := range ss {
		ss[i].Pre = dur(300*time.Millisecond, 1500*time.Millisecond)
	}
	return ss
}
