package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tandem-lb/tandem/failover"
	"github.com/tandem-lb/tandem/pkg/api"
)

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

// say prints a line to stderr and the log, stamped.
func (d *driver) say(format string, a ...any) {
	line := fmt.Sprintf("%s chaos: %s", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
	fmt.Fprintln(os.Stderr, line)
	fmt.Fprintln(d.logf, line)
}

func (d *driver) ns(box string) string { return d.o.prefix + "-" + box }

// poll fetches both nodes' status every pollStep: the settle checks read
// the latest, and each sample says whether both heard each other.
func (d *driver) poll(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	cl := map[string]*api.Client{}
	for _, b := range []string{"lb1", "lb2"} {
		cl[b] = api.NewClient(filepath.Join(d.o.out, b+".sock"))
	}
	every(ctx, pollStep, func() bool {
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
		return true
	})
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
	// killFor: kill -9 of the child name, started again with start
	// when the fault's hold is over
	killFor := func(name string, start func(string) error) {
		if !d.kill(name, syscall.SIGKILL, 2*time.Second) {
			errs = append(errs, name+" did not die on SIGKILL")
		}
		sleepUntil(ctx, t0.Add(st.Hold))
		row.FaultEnd = time.Now()
		if err := start(row.Target); err != nil {
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
		killFor("tandem-"+row.Target, d.startTandem)
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
		killFor("backend-"+row.Target, d.startBackend)
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
