#!/usr/bin/env bash
# Pair figures that need no comparison partner:
#   sigterm: SIGTERM the master N times while a client probes the VIP every
#            10 ms; counts the failed probes of each graceful hand-over
#            (goal: 0), then restarts the stopped node and lets it preempt.
#   steady:  both boxes healthy for SECONDS while both cores are kept busy
#            by bounded CPU burners; counts state transitions (goal: 0).
#
# Usage: scripts/bench-pair.sh [-p PREFIX] [sigterm [N]] [steady [SECONDS]]
#        (no argument: sigterm 10 and steady 300)
# Env:   TANDEM_BIN, LABTOOLS_BIN  binaries [built into a temp dir]
# Needs root. Traffic stays in the lab's namespaces (198.18.0.0/24).
set -euo pipefail
cd "$(dirname "$0")/.."

P=tbpair
if [[ ${1:-} == -p ]]; then P=$2; shift 2; fi
[[ $(id -u) -eq 0 ]] || { echo "bench-pair.sh: must run as root" >&2; exit 1; }

# TMP, PIDS, and the EXIT trap that stops them and the lab
. scripts/lib/proc.sh
lab_session tandem-bench-pair

log() { echo "bench-pair: $*" >&2; }

TANDEM=${TANDEM_BIN:-}
LABTOOLS=${LABTOOLS_BIN:-}
if [[ -z $TANDEM ]]; then go build -o "$TMP/tandem" ./cmd/tandem; TANDEM=$TMP/tandem; fi
if [[ -z $LABTOOLS ]]; then go build -o "$TMP/labtools" ./scripts/labtools; LABTOOLS=$TMP/labtools; fi

scripts/lab.sh -p "$P" up >/dev/null
"$TANDEM" keygen >"$TMP/key"

declare -A NODEPID
start_node() {
    local n=$1 prio self peer
    if [[ $n == lb1 ]]; then prio=150 self=198.18.0.11 peer=198.18.0.12; else prio=100 self=198.18.0.12 peer=198.18.0.11; fi
    cat >"$TMP/$n.yaml" <<CONF
node:
  name: $n
  api_socket: $TMP/$n.sock
cluster:
  bind: $self:7946
  peers: [$peer:7946]
  secret_file: $TMP/key
failover:
  interface: eth0
  priority: $prio
  advert_interval: 50ms
  vips: [198.18.0.100/24]
CONF
    ip netns exec "$P-$n" "$TANDEM" run --config "$TMP/$n.yaml" >>"$TMP/$n.log" 2>&1 &
    NODEPID[$n]=$!
    PIDS+=($!)
}

state() { "$TANDEM" status --socket "$TMP/$1.sock" --json 2>/dev/null | sed -n 's/^  "state": "\(.*\)",/\1/p'; }
transitions() { "$TANDEM" status --socket "$TMP/$1.sock" --json 2>/dev/null | grep -c '"reason"' || true; }

wait_master() {
    local n=$1 other=$2 i
    for i in $(seq 1 500); do
        if [[ $(state "$n") == MASTER && $(state "$other") == BACKUP ]]; then return 0; fi
        sleep 0.02
    done
    log "timed out waiting for $n MASTER"; return 1
}

for n in lb1 lb2; do
    ip netns exec "$P-$n" "$LABTOOLS" respond -listen 0.0.0.0:8080 -name "$n" >/dev/null 2>&1 &
    PIDS+=($!)
    start_node "$n"
done
wait_master lb1 lb2

run_sigterm() {
    local n=$1 i total=0
    echo "== SIGTERM of the master, $n times, client probing every 10 ms"
    printf '%-4s %-10s %s\n' run failed probes
    for i in $(seq 1 "$n"); do
        ip netns exec "$P-client" "$LABTOOLS" probe -q -target 198.18.0.100:8080 -interval 10ms \
            -timeout 50ms -duration 60s >"$TMP/probe.json" 2>/dev/null &
        local probe=$!
        sleep 0.3
        kill -TERM "${NODEPID[lb1]}"
        wait "${NODEPID[lb1]}" || log "lb1 exited non-zero"
        sleep 0.5
        start_node lb1
        wait_master lb1 lb2
        sleep 0.3
        kill -TERM "$probe"; wait "$probe" || true
        local failed probes
        failed=$(sed -n 's/.*"failed":\([0-9]*\).*/\1/p' "$TMP/probe.json" | head -1)
        probes=$(sed -n 's/.*"probes":\([0-9]*\).*/\1/p' "$TMP/probe.json" | head -1)
        printf '%-4s %-10s %s\n' "$i" "$failed" "$probes"
        total=$((total + failed))
    done
    echo "SIGTERM hand-over and preempting restart: $total failed probes in $n runs (goal 0)"
}

run_steady() {
    local secs=$1 before1 before2 after1 after2 i
    echo "== steady: $secs s, both boxes healthy, both cores busy"
    before1=$(transitions lb1); before2=$(transitions lb2)
    local burners=()
    for i in 1 2; do
        timeout "$secs" sh -c 'while :; do :; done' &
        burners+=($!); PIDS+=($!)
    done
    sleep "$secs"
    for b in "${burners[@]}"; do wait "$b" 2>/dev/null || true; done
    after1=$(transitions lb1); after2=$(transitions lb2)
    local d=$(( (after1 - before1) + (after2 - before2) ))
    echo "transitions during $secs s under CPU load: $d (goal 0); lb1 $(state lb1), lb2 $(state lb2)"
    [[ $d -eq 0 ]]
}

if [[ $# -eq 0 ]]; then set -- sigterm 10 steady 300; fi
rc=0
while [[ $# -gt 0 ]]; do
    case $1 in
        sigterm) run_sigterm "${2:-10}" || rc=1; shift; [[ ${1:-} =~ ^[0-9]+$ ]] && shift ;;
        steady) run_steady "${2:-300}" || rc=1; shift; [[ ${1:-} =~ ^[0-9]+$ ]] && shift ;;
        *) echo "usage: $0 [-p PREFIX] [sigterm [N]] [steady [SECONDS]]" >&2; exit 2 ;;
    esac
done
exit $rc
