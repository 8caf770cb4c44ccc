package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tandem-lb/tandem/failover"
	"github.com/tandem-lb/tandem/pkg/api"
)

// The chaos suite's driver (scripts/chaos.sh runs it inside the lab's
// client namespace, after `lab.sh up`). It starts the backends, a VIP
// watcher in each load balancer's namespace and the pair; puts sticky
// clients and two 10 ms probers on the VIPs; then performs a seeded,
// shuffled list of faults, waits after each for the pair to settle and
// records a row: outages, failed requests, sticky clients that lost their
// server, time both boxes held a VIP, transitions observed against those
// expected. It prints the table, writes it to -out and exits 1 when a
// goal was missed.

const (
	vipTCP   = "198.18.0.100"
	vipUDP   = "198.18.0.101"
	udpPort  = "5300"
	witness  = "198.18.0.2" // the client's own address
	advert   = 50 * time.Millisecond
	pollStep = 25 * time.Millisecond
)

var vipCIDRs = []string{vipTCP + "/24", vipUDP + "/24"}

// features of the pair that the suite turns on when the binary knows them
var allFeatures = []string{"heartbeat_paths", "witness", "link_holddown"}

type chaosOpts struct {
	prefix, lab, tandem, out string
	seed                     uint64
	pulls, kills, isolates   int
	features                 string
	period, probeInterval    time.Duration
	clients                  int
	clientsFrom              string
	maxTime                  time.Duration
	settleTimeout            time.Duration
	baseline                 time.Duration
}

type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

type driver struct {
	o        chaosOpts
	self     string // this labtools binary
	features map[string]bool
	pidsFile *os.File
	logf     *os.File

	mu       sync.Mutex
	children map[string]*child
	vipEvs   []AddrEvent
	holders  map[string]map[string]bool // addr -> box -> held
	status   map[string]*api.Status     // latest poll per node
	hear     []HearSample
	dead     DeadWindows

	ld    *load
	rows  []Row
	start time.Time
}

func cmdChaos(args []string) error {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	var o chaosOpts
	fs.StringVar(&o.prefix, "prefix", "chaos", "lab prefix (scripts/lab.sh -p)")
	fs.StringVar(&o.lab, "lab", "scripts/lab.sh", "path of lab.sh")
	fs.StringVar(&o.tandem, "tandem", "bin/tandem", "tandem binary")
	fs.StringVar(&o.out, "out", "", "output folder (required): configs, logs, table")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the order and timing of the faults")
	fs.IntVar(&o.pulls, "pulls", 20, "cable pulls (and plugs) of a random box")
	fs.IntVar(&o.kills, "kills", 2, "kill -9 and restart of a random box")
	fs.IntVar(&o.isolates, "isolates", 2, "isolations of a random box (carrier up)")
	fs.StringVar(&o.features, "features", "all", "pair features: all|auto|none or a comma list of "+strings.Join(allFeatures, ","))
	fs.DurationVar(&o.period, "period", 2*time.Second, "each sticky client's request period (TCP then UDP)")
	fs.DurationVar(&o.probeInterval, "probe-interval", 10*time.Millisecond, "prober interval")
	fs.IntVar(&o.clients, "clients", 500, "sticky clients")
	fs.StringVar(&o.clientsFrom, "clients-from", "198.18.2.1", "first sticky client address (on the client's eth0)")
	fs.DurationVar(&o.maxTime, "max-time", 13*time.Minute, "stop performing faults after this long")
	fs.DurationVar(&o.settleTimeout, "settle-timeout", 30*time.Second, "longest wait for the pair to settle after a step")
	fs.DurationVar(&o.baseline, "baseline", 5*time.Second, "steady load before the first fault (a step of its own)")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if o.out == "" || fs.NArg() != 0 || o.pulls < 0 || o.pulls > 200 || o.kills < 0 || o.kills > 20 ||
		o.isolates < 0 || o.isolates > 20 || o.clients < 1 || o.clients > 4000 || o.period < 100*time.Millisecond ||
		o.maxTime <= 0 || o.maxTime > time.Hour {
		return usageError("chaos: -out DIR required; -pulls 0..200, -kills/-isolates 0..20, -clients 1..4000, -period ≥ 100ms, -max-time ≤ 1h")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for _, p := range []*string{&o.lab, &o.tandem, &o.out} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	d := &driver{o: o, self: self, children: map[string]*child{}, holders: map[string]map[string]bool{},
		status: map[string]*api.Status{}, dead: DeadWindows{}}
	if d.pidsFile, err = os.OpenFile(filepath.Join(o.out, "pids"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return err
	}
	if d.logf, err = os.Create(filepath.Join(o.out, "chaos.log")); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	defer d.stopAll()
	return d.run(ctx)
}

// say prints a line to stderr and the log, stamped.
func (d *driver) say(format string, a ...any) {
	line := fmt.Sprintf("%s chaos: %s", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
	fmt.Fprintln(os.Stderr, line)
	fmt.Fprintln(d.logf, line)
}

func (d *driver) ns(box string) string { return d.o.prefix + "-" + box }

// spawn runs argv inside box's namespace; stdout goes to out (or the log
// file), stderr to the log file. The PID is recorded for chaos.sh's trap.
func (d *driver) spawn(name, box string, stdout io.Writer, argv ...string) (*child, error) {
	logPath := filepath.Join(d.o.out, name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", d.ns(box)}, argv...)...)
	cmd.Stderr = lf
	if stdout != nil {
		cmd.Stdout = stdout
	} else {
		cmd.Stdout = lf
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	fmt.Fprintf(d.pidsFile, "%d %s\n", cmd.Process.Pid, name)
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); lf.Close(); close(c.done) }()
	d.mu.Lock()
	d.children[name] = c
	d.mu.Unlock()
	return c, nil
}

// kill sends sig to a child we started and waits up to wait for it.
func (d *driver) kill(name string, sig syscall.Signal, wait time.Duration) bool {
	d.mu.Lock()
	c := d.children[name]
	d.mu.Unlock()
	if c == nil {
		return true
	}
	select {
	case <-c.done:
		return true
	default:
	}
	c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
		return true
	case <-time.After(wait):
		return false
	}
}

// stopAll ends every child we started: TERM, then KILL.
func (d *driver) stopAll() {
	d.mu.Lock()
	names := make([]string, 0, len(d.children))
	for n := range d.children {
		names = append(names, n)
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !d.kill(n, syscall.SIGTERM, 3*time.Second) {
				d.kill(n, syscall.SIGKILL, 2*time.Second)
			}
		}()
	}
	wg.Wait()
}

func (d *driver) labsh(args ...string) error {
	out, err := exec.Command(d.o.lab, append([]string{"-p", d.o.prefix}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab.sh %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

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

// ---- processes of the lab

func (d *driver) startBackend(be string) error {
	_, err := d.spawn("backend-"+be, be, nil, d.self, "backend", "-name", be, "-http", "0.0.0.0:80", "-udp", "0.0.0.0:"+udpPort)
	return err
}

func (d *driver) startTandem(box string) error {
	_, err := d.spawn("tandem-"+box, box, nil, d.o.tandem, "run", "--config", filepath.Join(d.o.out, box+".yaml"))
	return err
}

// startVipwatch runs a watcher in box's namespace and follows its lines.
func (d *driver) startVipwatch(box string) error {
	pr, pw := io.Pipe()
	raw, err := os.Create(filepath.Join(d.o.out, "vip-"+box+".jsonl"))
	if err != nil {
		return err
	}
	ready := make(chan struct{})
	go func() {
		defer raw.Close()
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			raw.Write(append(sc.Bytes(), '\n'))
			var e AddrEvent
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			if e.Op == "ready" {
				once.Do(func() { close(ready) })
				continue
			}
			d.mu.Lock()
			d.vipEvs = append(d.vipEvs, e)
			if d.holders[e.Addr] == nil {
				d.holders[e.Addr] = map[string]bool{}
			}
			d.holders[e.Addr][e.Box] = e.Op == "add"
			d.mu.Unlock()
		}
	}()
	c, err := d.spawn("vipwatch-"+box, box, pw, d.self, "vipwatch", "-iface", "eth0", "-box", box, "-duration", "1h")
	if err != nil {
		return err
	}
	go func() { <-c.done; pw.Close() }()
	select {
	case <-ready:
		return nil
	case <-c.done:
		return fmt.Errorf("vipwatch in %s exited (see %s/vipwatch-%s.log)", box, d.o.out, box)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("vipwatch in %s not ready after 5s", box)
	}
}

// poll fetches both nodes' status every pollStep: the settle checks read
// the latest, and each sample says whether both heard each other.
func (d *driver) poll(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	cl := map[string]*api.Client{}
	for _, b := range []string{"lb1", "lb2"} {
		cl[b] = api.NewClient(filepath.Join(d.o.out, b+".sock"))
	}
	t := time.NewTicker(pollStep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		at := time.Now()
		sts := map[string]*api.Status{}
		var swg sync.WaitGroup
		var smu sync.Mutex
		for b, c := range cl {
			swg.Add(1)
			go func() {
				defer swg.Done()
				cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				defer cancel()
				st, err := c.Status(cctx)
				if err != nil {
					st = nil
				}
				smu.Lock()
				sts[b] = st
				smu.Unlock()
			}()
		}
		swg.Wait()
		hear := hears(sts["lb1"]) && hears(sts["lb2"])
		d.mu.Lock()
		d.status = sts
		d.hear = append(d.hear, HearSample{At: at, Hear: hear})
		d.mu.Unlock()
	}
}

// hears: the node is up and sees its peer alive, heard within the
// master-down time.
func hears(st *api.Status) bool {
	if st == nil || len(st.Peers) == 0 {
		return false
	}
	p := st.Peers[0]
	return p.Alive && p.LastHeardMs >= 0 && p.LastHeardMs <= int64(3*advert/time.Millisecond)
}

// settledNow: lb1 MASTER holding both VIPs alone, lb2 BACKUP, both in sync
// and seeing every server up. The reason when not.
func (d *driver) settledNow() (bool, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s1, s2 := d.status["lb1"], d.status["lb2"]
	switch {
	case s1 == nil || s2 == nil:
		return false, "a node does not answer on its socket"
	case s1.State != "MASTER" || s2.State != "BACKUP":
		return false, fmt.Sprintf("lb1 %s, lb2 %s", s1.State, s2.State)
	}
	for _, v := range vipCIDRs {
		if !d.holders[v]["lb1"] || d.holders[v]["lb2"] {
			return false, fmt.Sprintf("%s on lb1=%v lb2=%v", v, d.holders[v]["lb1"], d.holders[v]["lb2"])
		}
	}
	for _, st := range []*api.Status{s1, s2} {
		if st.Persistence.Enabled && st.Persistence.State != "IN SYNC" {
			return false, st.Node + " persistence " + st.Persistence.State
		}
		for _, c := range st.Clusters {
			for _, s := range c.Servers {
				if !s.Healthy {
					return false, fmt.Sprintf("%s sees %s/%s down", st.Node, c.Name, s.Name)
				}
			}
		}
	}
	return true, ""
}

// settle waits until the pair has been settled for quiet; it returns when
// it first became settled (for the settle time) and whether it did.
func (d *driver) settle(ctx context.Context, timeout, quiet time.Duration) (time.Time, bool, string) {
	deadline := time.Now().Add(timeout)
	var since time.Time
	why := ""
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ok, w := d.settledNow()
		switch {
		case ok && since.IsZero():
			since = time.Now()
		case ok && time.Since(since) >= quiet:
			return since, true, ""
		case !ok:
			since, why = time.Time{}, w
		}
		sleepCtx(ctx, pollStep)
	}
	return time.Now(), false, why
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// sleepUntil sleeps until t (or ctx ends).
func sleepUntil(ctx context.Context, t time.Time) { sleepCtx(ctx, time.Until(t)) }

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

// ---- running

func (d *driver) run(ctx context.Context) error {
	d.start = time.Now()
	o := d.o
	plan := Plan(o.seed, o.pulls, o.kills, o.isolates)
	d.say("seed %d: %d steps (%d pulls, %d kills, 1 flap, 1 partition, 1 heartbeat cut, %d isolations, 1 backend kill)",
		o.seed, len(plan), o.pulls, o.kills, o.isolates)
	pj, _ := json.MarshalIndent(plan, "", "  ")
	os.WriteFile(filepath.Join(o.out, "plan.json"), pj, 0o644)

	key, err := exec.Command(o.tandem, "keygen").Output()
	if err != nil {
		return fmt.Errorf("tandem keygen: %w", err)
	}
	if err := os.WriteFile(filepath.Join(o.out, "cluster.key"), key, 0o600); err != nil {
		return err
	}
	if err := d.chooseFeatures(); err != nil {
		return err
	}
	d.say("pair features: %v (of %v)", keys(d.features), allFeatures)

	var bg sync.WaitGroup
	bctx, bcancel := context.WithCancel(ctx)
	defer func() { bcancel(); bg.Wait() }()

	for _, be := range []string{"be1", "be2"} {
		if err := d.startBackend(be); err != nil {
			return err
		}
	}
	for _, lb := range []string{"lb1", "lb2"} {
		if err := d.startVipwatch(lb); err != nil {
			return err
		}
	}
	bg.Add(1)
	go d.poll(bctx, &bg)
	if err := d.startTandem("lb1"); err != nil {
		return err
	}
	if err := d.startTandem("lb2"); err != nil {
		return err
	}
	if _, ok, why := d.settle(ctx, 30*time.Second, time.Second); !ok {
		return fmt.Errorf("the pair did not come up settled in 30s: %s (logs in %s)", why, o.out)
	}
	d.say("pair up: lb1 MASTER with %v, lb2 BACKUP, in sync", vipCIDRs)

	first, err := netip.ParseAddr(o.clientsFrom)
	if err != nil {
		return usageError("-clients-from: " + err.Error())
	}
	var addrs []netip.Addr
	for a := first; len(addrs) < o.clients; a = a.Next() {
		addrs = append(addrs, a)
	}
	d.ld = &load{tcpTarget: vipTCP + ":80", udpTarget: vipUDP + ":" + udpPort, clients: addrs,
		period: o.period, reqTimeout: time.Second}
	lctx, lcancel := context.WithCancel(ctx)
	var lwg sync.WaitGroup
	d.ld.start(lctx, o.probeInterval, &lwg)
	defer func() { lcancel(); lwg.Wait() }()
	d.say("load: %d sticky clients from %s, TCP %s and UDP %s every %s; probers every %s",
		o.clients, o.clientsFrom, d.ld.tcpTarget, d.ld.udpTarget, o.period, o.probeInterval)
	// every client answered once on both protocols: its server is known
	if !d.waitHomes(ctx, 2*o.period+5*time.Second) {
		d.say("warning: not every sticky client has been answered yet")
	}

	pullGoal := d.features["heartbeat_paths"]
	// A master handing its VIPs over keeps them for the make-before-break
	// overlap after the new master announced: that dual hold is wanted.
	goals := Goals{MaxOutage: 300 * time.Millisecond, MaxDualHeard: failover.DefaultOverlap(advert) + advert}
	if pullGoal {
		goals.MaxPullOutage = 20 * time.Millisecond
	}
	d.say("goals: outage ≤ %s per event%s; 0 sticky clients lost; 0 spurious transitions; VIP on both boxes ≤ %s after they hear each other",
		goals.MaxOutage, map[bool]string{true: " (≤ 20ms for a cable pull: second heartbeat path on)", false: ""}[pullGoal], goals.MaxDualHeard)

	// baseline: steady load, nothing done
	bStart := time.Now()
	sleepCtx(ctx, o.baseline)
	row := Row{N: 0, Event: "baseline", Detail: fmt.Sprintf("steady %s", o.baseline), Start: bStart, FaultEnd: bStart}
	row.End, row.Settled, row.SettleMS = time.Now(), true, 0
	d.finishRow(&row, goals, pullGoal)

	deadline := d.start.Add(o.maxTime)
	prevEnd := row.End
	for i, st := range plan {
		if ctx.Err() != nil {
			break
		}
		if time.Now().After(deadline) {
			d.say("max time %s reached: %d of %d steps not run", o.maxTime, len(plan)-i, len(plan))
			break
		}
		row := Row{N: i + 1, Event: st.Event, Start: prevEnd}
		d.runStep(ctx, st, &row)
		settledAt, ok, why := d.settle(ctx, o.settleTimeout, 500*time.Millisecond)
		row.Settled = ok
		row.SettleMS = msf(settledAt.Sub(row.FaultEnd))
		if !ok {
			d.say("step %d did not settle in %s: %s", row.N, o.settleTimeout, why)
		}
		// let probes and requests in flight finish before counting
		sleepCtx(ctx, 100*time.Millisecond)
		row.End = time.Now()
		d.finishRow(&row, goals, pullGoal)
		prevEnd = row.End
	}

	lcancel()
	lwg.Wait()
	return d.report(goals, pullGoal)
}

// waitHomes waits until every client has been answered over TCP and UDP.
func (d *driver) waitHomes(ctx context.Context, max time.Duration) bool {
	end := time.Now().Add(max)
	for time.Now().Before(end) && ctx.Err() == nil {
		seen := map[string]bool{}
		for _, r := range d.ld.records() {
			if r.Server != "" {
				seen[r.Proto+" "+r.Client] = true
			}
		}
		if len(seen) >= 2*len(d.ld.clients) {
			return true
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
	return false
}

func (d *driver) masterNow() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, b := range []string{"lb1", "lb2"} {
		if st := d.status[b]; st != nil && st.State == "MASTER" {
			return b
		}
	}
	return ""
}

func (d *driver) roleOf(box string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if st := d.status[box]; st != nil {
		return st.State
	}
	return "DOWN"
}

// runStep performs one fault; row gets Target, Role, Detail and FaultEnd.
func (d *driver) runStep(ctx context.Context, st chaosStep, row *Row) {
	sleepCtx(ctx, st.Pre)
	t0 := time.Now()
	row.Target = st.Target
	if st.Target == "master" {
		row.Target = d.masterNow()
		if row.Target == "" {
			row.Target = "lb1"
		}
	}
	if row.Target == "lb1" || row.Target == "lb2" {
		row.Role = d.roleOf(row.Target)
	}
	var errs []string
	do := func(args ...string) {
		if err := d.labsh(args...); err != nil {
			errs = append(errs, err.Error())
		}
	}
	d.say("step %d: %s (role %s)", row.N, st, row.Role)
	switch st.Event {
	case "pull":
		do("pull", row.Target)
		sleepUntil(ctx, t0.Add(st.Hold))
		row.FaultEnd = time.Now()
		do("plug", row.Target)
		row.Detail = fmt.Sprintf("held %.1fs", st.Hold.Seconds())
	case "kill":
		name := "tandem-" + row.Target
		if !d.kill(name, syscall.SIGKILL, 2*time.Second) {
			errs = append(errs, name+" did not die on SIGKILL")
		}
		sleepUntil(ctx, t0.Add(st.Hold))
		row.FaultEnd = time.Now()
		if err := d.startTandem(row.Target); err != nil {
			errs = append(errs, err.Error())
		}
		row.Detail = fmt.Sprintf("kill -9, restart after %.1fs", st.Hold.Seconds())
	case "flap":
		for i, at := range st.Flaps {
			sleepUntil(ctx, t0.Add(at))
			if i%2 == 0 {
				do("pull", row.Target)
			} else {
				do("plug", row.Target)
			}
		}
		row.FaultEnd = time.Now()
		if len(st.Flaps)%2 == 1 { // always end plugged in
			do("plug", row.Target)
		}
		row.Detail = fmt.Sprintf("%d changes in %.1fs", len(st.Flaps), time.Since(t0).Seconds())
	case "partition":
		do("partition", "all")
		sleepUntil(ctx, t0.Add(st.Hold))
		row.FaultEnd = time.Now()
		do("heal")
		row.Detail = fmt.Sprintf("lb1<->lb2 on the LAN cut %.1fs", st.Hold.Seconds())
	case "hbcut":
		do("hbpull")
		do("partition", "ip")
		sleepUntil(ctx, t0.Add(st.Hold))
		row.FaultEnd = time.Now()
		do("heal")
		do("hbplug")
		row.Detail = fmt.Sprintf("hb0 down + IPv4 lb1<->lb2 dropped %.1fs", st.Hold.Seconds())
	case "isolate":
		do("isolate", row.Target)
		sleepUntil(ctx, t0.Add(st.Hold))
		row.FaultEnd = time.Now()
		do("heal")
		row.Detail = fmt.Sprintf("isolated %.1fs, carrier up", st.Hold.Seconds())
	case "backend":
		name := "backend-" + row.Target
		if !d.kill(name, syscall.SIGKILL, 2*time.Second) {
			errs = append(errs, name+" did not die on SIGKILL")
		}
		sleepUntil(ctx, t0.Add(st.Hold))
		row.FaultEnd = time.Now()
		if err := d.startBackend(row.Target); err != nil {
			errs = append(errs, err.Error())
		}
		// a request on its way when it came back may still have moved
		d.mu.Lock()
		d.dead[row.Target] = append(d.dead[row.Target], Interval{From: t0, To: row.FaultEnd.Add(500 * time.Millisecond)})
		d.mu.Unlock()
		row.Detail = fmt.Sprintf("kill -9, revived after %.1fs", st.Hold.Seconds())
	}
	row.Expected = ExpectedMoves(st.Event, row.Role)
	if len(errs) > 0 {
		row.Harness = append(row.Harness, "harness: "+strings.Join(errs, "; "))
		d.say("step %d: %s", row.N, strings.Join(errs, "; "))
	}
}

// finishRow measures the row's window, judges it and prints it. The
// report measures every row again once the load has stopped, when every
// probe and request has completed (an outage running past a step's end is
// then measured whole).
func (d *driver) finishRow(row *Row, g Goals, pullGoal bool) {
	row.Moves, row.Trans = d.transitions(row.Start, row.End)
	d.rows = append(d.rows, *row)
	r := d.measure(len(d.rows)-1, g, pullGoal)
	d.say("row: %s", strings.TrimSpace(strings.SplitN(FormatTable([]Row{r}, false), "\n", 2)[1]))
}

// measure computes row i's figures from the probes, requests, VIP events
// and hearing samples recorded so far, and judges it.
func (d *driver) measure(i int, g Goals, pullGoal bool) Row {
	row := d.rows[i]
	from, to := row.Start, row.End
	tcpRs, udpRs := d.ld.tcpProbe.completed(), d.ld.udpProbe.completed()
	tcpOuts, tcpFail := ProbeOutages(tcpRs, from, to)
	udpOuts, udpFail := ProbeOutages(udpRs, from, to)
	row.StallMS = msf(max(MaxLaunchGap(tcpRs, from, to), MaxLaunchGap(udpRs, from, to)))
	tm, to1 := MaxOutage(tcpOuts)
	um, to2 := MaxOutage(udpOuts)
	row.TCPOutMS, row.UDPOutMS, row.OpenOut = msf(tm), msf(um), to1 || to2
	row.ProbeFail = tcpFail + udpFail

	recs := d.ld.records()
	row.Requests, row.ReqFail = 0, 0
	for _, r := range recs {
		if !r.At.Before(from) && r.At.Before(to) {
			row.Requests++
			if r.Server == "" {
				row.ReqFail++
			}
		}
	}
	d.mu.Lock()
	dead := d.dead
	evs := append([]AddrEvent(nil), d.vipEvs...)
	hear := HearIntervals(d.hear, to)
	d.mu.Unlock()
	changes := StickyChanges(recs, dead.Dead)
	row.Lost, row.Rehomed = LostClients(changes, from, to)

	row.DualMS, row.DualHeard = 0, 0
	for _, ivs := range DualHolds(evs, "lb1", "lb2", vipCIDRs, to) {
		c := Clip(ivs, from, to)
		if v := msf(Total(c)); v > row.DualMS {
			row.DualMS = v
		}
		if v := msf(DualAfterHeard(c, hear)); v > row.DualHeard {
			row.DualHeard = v
		}
	}
	harness := row.Harness
	row.Judge(g, pullGoal)
	row.Missed = append(harness, row.Missed...)
	d.rows[i] = row
	return row
}

// transitions lists both nodes' transitions in [from, to) and counts
// those to MASTER.
func (d *driver) transitions(from, to time.Time) (int, []string) {
	type tr struct {
		at   time.Time
		text string
		m    bool
	}
	var all []tr
	for _, b := range []string{"lb1", "lb2"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := api.NewClient(filepath.Join(d.o.out, b+".sock")).Status(ctx)
		cancel()
		if err != nil {
			all = append(all, tr{at: to, text: b + ": status unreachable"})
			continue
		}
		for _, t := range st.Transitions {
			if t.At.Before(from) || !t.At.Before(to) {
				continue
			}
			all = append(all, tr{at: t.At, m: t.To == "MASTER",
				text: fmt.Sprintf("%s %s %s->%s (%s)", t.At.Local().Format("15:04:05.000"), b, t.From, t.To, t.Reason)})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
	n := 0
	var out []string
	for _, t := range all {
		if t.m {
			n++
		}
		out = append(out, t.text)
	}
	return n, out
}

// report prints the table and the totals, writes them out, and returns an
// error when a goal was missed.
func (d *driver) report(g Goals, pullGoal bool) error {
	for i := range d.rows {
		d.measure(i, g, pullGoal)
	}
	rows := d.rows
	var sum struct {
		Seed        uint64   `json:"seed"`
		Features    []string `json:"features"`
		Steps       int      `json:"steps"`
		Missed      int      `json:"steps_missing_a_goal"`
		WorstOutMS  float64  `json:"worst_outage_ms"`
		WorstEvent  string   `json:"worst_outage_event"`
		Requests    int      `json:"requests"`
		ReqFailed   int      `json:"requests_failed"`
		ProbeFailed int      `json:"probes_failed"`
		Lost        int      `json:"sticky_lost"`
		Rehomed     int      `json:"sticky_rehomed_off_dead_backend"`
		DualMS      float64  `json:"dual_ms_total"`
		DualHeard   float64  `json:"dual_after_heard_ms_worst"`
		Spurious    int      `json:"spurious_transitions"`
		Missing     int      `json:"missing_transitions"`
		Unsettled   int      `json:"steps_not_settled"`
		Seconds     float64  `json:"seconds"`
	}
	sum.Seed, sum.Features, sum.Steps = d.o.seed, keys(d.features), len(rows)
	for _, r := range rows {
		if len(r.Missed) > 0 {
			sum.Missed++
		}
		for _, v := range []float64{r.TCPOutMS, r.UDPOutMS} {
			if v > sum.WorstOutMS {
				sum.WorstOutMS, sum.WorstEvent = v, fmt.Sprintf("#%d %s %s", r.N, r.Event, r.Target)
			}
		}
		sum.Requests += r.Requests
		sum.ReqFailed += r.ReqFail
		sum.ProbeFailed += r.ProbeFail
		sum.Lost += r.Lost
		sum.Rehomed += r.Rehomed
		sum.DualMS += r.DualMS
		if r.DualHeard > sum.DualHeard {
			sum.DualHeard = r.DualHeard
		}
		sum.Spurious += r.Spurious()
		if r.Moves < r.Expected {
			sum.Missing += r.Expected - r.Moves
		}
		if !r.Settled {
			sum.Unsettled++
		}
	}
	sum.Seconds = time.Since(d.start).Seconds()

	table := FormatTable(rows, false)
	var b strings.Builder
	fmt.Fprintf(&b, "\nchaos: seed %d, features %v, %d steps in %.0fs\n\n", sum.Seed, sum.Features, sum.Steps, sum.Seconds)
	b.WriteString(table)
	fmt.Fprintf(&b, "\ntotals: worst outage %.0f ms (%s); failed requests %d of %d, failed probes %d; sticky clients lost %d (moved off a killed backend %d); "+
		"VIP on both boxes %.1f ms in all, worst %.1f ms after they heard each other; spurious transitions %d, missing %d; steps not settled %d\n",
		sum.WorstOutMS, sum.WorstEvent, sum.ReqFailed, sum.Requests, sum.ProbeFailed, sum.Lost, sum.Rehomed,
		sum.DualMS, sum.DualHeard, sum.Spurious, sum.Missing, sum.Unsettled)
	for _, r := range rows {
		if len(r.Missed) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n#%d %s %s (%s) missed: %s\n", r.N, r.Event, r.Target, r.Detail, strings.Join(r.Missed, "; "))
		for _, t := range r.Trans {
			fmt.Fprintf(&b, "    %s\n", t)
		}
	}
	verdict := fmt.Sprintf("\nchaos: every goal met in %d steps\n", sum.Steps)
	if sum.Missed > 0 {
		verdict = fmt.Sprintf("\nchaos: %d of %d steps missed a goal (details above; logs in %s)\n", sum.Missed, sum.Steps, d.o.out)
	}
	b.WriteString(verdict)
	fmt.Print(b.String())

	os.WriteFile(filepath.Join(d.o.out, "table.txt"), []byte(b.String()), 0o644)
	md := fmt.Sprintf("# Chaos run, seed %d\n\nfeatures: %v\n\n%s\n%s", sum.Seed, sum.Features, FormatTable(rows, true), verdict)
	os.WriteFile(filepath.Join(d.o.out, "table.md"), []byte(md), 0o644)
	j, _ := json.MarshalIndent(struct {
		Summary any   `json:"summary"`
		Rows    []Row `json:"rows"`
	}{sum, rows}, "", "  ")
	os.WriteFile(filepath.Join(d.o.out, "table.json"), j, 0o644)
	d.writeDetails()
	if sum.Missed > 0 || len(rows) == 0 {
		return errGoalsMissed
	}
	return nil
}

var errGoalsMissed = errors.New("goals missed")

// writeDetails keeps what a failure needs for diagnosis: sticky changes,
// failed requests and both nodes' event timelines.
func (d *driver) writeDetails() {
	recs := d.ld.records()
	f, err := os.Create(filepath.Join(d.o.out, "sticky-changes.txt"))
	if err == nil {
		for _, c := range StickyChanges(recs, d.dead.Dead) {
			fmt.Fprintf(f, "%s %s %s %s -> %s excused=%v\n", c.At.Format("15:04:05.000"), c.Proto, c.Client, c.From, c.To, c.Excused)
		}
		f.Close()
	}
	if f, err = os.Create(filepath.Join(d.o.out, "failed-requests.txt")); err == nil {
		for _, r := range recs {
			if r.Server == "" {
				fmt.Fprintf(f, "%s %s %s\n", r.At.Format("15:04:05.000"), r.Proto, r.Client)
			}
		}
		f.Close()
	}
	for name, pl := range map[string]*probeLog{"tcp": d.ld.tcpProbe, "udp": d.ld.udpProbe} {
		s := Summarize(pl.completed()).JSON()
		j, _ := json.MarshalIndent(s, "", "  ")
		os.WriteFile(filepath.Join(d.o.out, "probe-"+name+".json"), j, 0o644)
	}
	out, _ := exec.Command(d.o.tandem, "events", "--socket", filepath.Join(d.o.out, "lb1.sock"),
		"--socket", filepath.Join(d.o.out, "lb2.sock"), "--last", "2000").CombinedOutput()
	os.WriteFile(filepath.Join(d.o.out, "events.txt"), out, 0o644)
}
