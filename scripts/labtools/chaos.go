package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

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
//
// Its files: chaos.go the command and its options; chaosplan.go the
// pair's configuration and the seeded faults; chaosdriver.go the run, step
// by step; chaosprocs.go the processes it starts; chaosload.go the clients
// and probers; chaosreport.go the rows, table and totals, computed by the
// pure functions of chaosanalysis.go.

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
