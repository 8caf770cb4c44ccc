// Command labtools holds small helpers for Tandem's network-namespace lab
// (see scripts/lab.sh): a static responder to stand in for a service, a
// prober that measures outages as a client sees them, and an outage
// calculator over a prober's event file.
//
//	labtools respond -listen 0.0.0.0:8080 -name lb1 [-udp]
//	labtools probe -target 198.18.0.100:8080 -duration 30s [-interval 10ms]
//	        [-timeout 50ms] [-udp] [-out events.jsonl] [-expect-stop FILE]
//	labtools outage -in events.jsonl [-after T] [-before T] [-print FIELD]
//	labtools clients -target URL [-from 198.18.2.1] [-count 500]
//
// Stdlib only.
package main

import (
	"fmt"
	"os"
)

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  labtools respond -listen ADDR -name NAME [-udp]
  labtools probe -target ADDR -duration D [-interval 10ms] [-timeout 50ms] [-udp]
                 [-out events.jsonl] [-expect-stop FILE]
  labtools outage -in events.jsonl [-after RFC3339] [-before RFC3339] [-print FIELD]
  labtools clients -target URL [-from 198.18.2.1] [-count 500] [-concurrency 50]
  labtools backend -name NAME [-http 0.0.0.0:80] [-udp ADDR]
  labtools vipwatch [-iface eth0] [-box NAME] [-out F.jsonl] [-duration 1h]
  labtools sessions -target ADDR -duration D [-n 200] [-interval 100ms] [-stall 150ms]
                 [-hang 1s] [-timeout 10s] [-ready FILE] [-stop FILE]
  labtools echo [-listen 0.0.0.0:5222] [-idle 1m] [-max-conns 10000] [-raw]
  labtools hold -target ADDR [-n 3000] [-c 100] [-timeout 10s] [-max 120s]
  labtools dnslat [-target 127.0.0.1:5300] [-rate 5000] [-conns 20] [-duration 5s] [-timeout 1s]
  labtools udpretry [-dns ADDR] [-radius ADDR] [-interval 10ms] [-timeout 200ms] [-count 300]
                 [-flows 2] [-slow 20ms] [-ready FILE]  (scripts/bench-udpretry.sh)
  labtools dnsflows [-target 127.0.0.3:53] [-n 100000] [-sockets 100] [-batch 200] [-timeout 2s] [-max 120s]
  labtools hapeers used|feed|wait -sock SOCK [-table bk] ...  (scripts/bench-persistence.sh)
  labtools persistreport -up0 U -up1 U [-bench F -mem F -fig F] [-lag F -insert F ...] [-out F.json]
  labtools chaos -out DIR [-seed N] [-pulls 20] [-features all|auto|none|LIST] ...  (scripts/chaos.sh)
  labtools garp -ip ADDR -mac MAC [-iface eth0] [-count 50] [-interval 100ms]
`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "respond":
		err = cmdRespond(os.Args[2:])
	case "probe":
		err = cmdProbe(os.Args[2:])
	case "outage":
		err = cmdOutage(os.Args[2:])
	case "clients":
		err = cmdClients(os.Args[2:])
	case "backend":
		err = cmdBackend(os.Args[2:])
	case "vipwatch":
		err = cmdVipwatch(os.Args[2:])
	case "chaos":
		err = cmdChaos(os.Args[2:])
	case "sessions":
		err = cmdSessions(os.Args[2:])
	case "echo":
		err = cmdEcho(os.Args[2:])
	case "garp":
		err = cmdGarp(os.Args[2:])
	case "hold":
		err = cmdHold(os.Args[2:])
	case "dnslat":
		err = cmdDNSLat(os.Args[2:])
	case "dnsflows":
		err = cmdDNSFlows(os.Args[2:])
	case "udpretry":
		err = cmdUDPRetry(os.Args[2:])
	case "hapeers":
		err = cmdHAPeers(os.Args[2:])
	case "persistreport":
		err = cmdPersistReport(os.Args[2:])
	case "-h", "-help", "--help", "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "labtools: unknown command %q\n", os.Args[1])
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "labtools %s: %v\n", os.Args[1], err)
		if _, ok := err.(usageError); ok {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError string

func (e usageError) Error() string { return string(e) }
