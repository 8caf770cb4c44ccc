#!/usr/bin/env bash
# make chaos: the chaos suite. A Tandem pair in the namespace lab (prefix
# `chaos`), under continuous load from 500 sticky clients through a TCP and
# a UDP VIP, goes through a seeded, shuffled list of faults: cable pulls and
# plugs of either box, kill -9 and restart of either box, a flapping link,
# a partition of only the path between the boxes, a heartbeat cut on a
# shared LAN, an isolated box, a backend killed and revived. After each
# step the pair must settle; each step is a row of the table (outage,
# failed requests, sticky clients that lost their server, time both boxes
# held a VIP, transitions observed against expected). Exits 0 only when
# every goal was met. The driver is `labtools chaos` (scripts/labtools).
#
# Environment:
#   CHAOS_SEED      order and timing of the faults [20261127]
#   CHAOS_PULLS     cable pulls [20]; CHAOS_KILLS [2]; CHAOS_ISOLATES [2]
#   CHAOS_FEATURES  all|auto|none|comma list of heartbeat_paths,witness,
#                   link_holddown [all]; auto: those this tandem validates
#   CHAOS_CLIENTS   sticky clients [500]; CHAOS_PERIOD each one's request
#                   period [2s]
#   CHAOS_OUT       output folder [a new /tmp/tandem-chaos.XXXXXX], kept
#   TANDEM_BIN      a tandem binary to test instead of building bin/tandem
#   LABTOOLS_BIN    likewise for bin/labtools
# Needs root. The whole run is bounded (faults stop after 13 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

P=chaos
SEED=${CHAOS_SEED:-20261127}
log() { echo "chaos.sh: $*" >&2; }
die() { log "$*"; exit 2; }
[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces)"
command -v nft >/dev/null || die "nft missing: run scripts/deps.sh nftables"
[[ $SEED =~ ^[0-9]+$ ]] || die "CHAOS_SEED must be a number"

OUT=${CHAOS_OUT:-$(mktemp -d /tmp/tandem-chaos.XXXXXX)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
: >"$OUT/pids"

DRIVER=
LAB_MADE=0
cleanup() {
    local rc=$? pid name
    set +e
    trap - EXIT INT TERM
    # the driver stops what it started; should it be stuck, its children
    # (listed in $OUT/pids) are stopped here, by PID
    if [[ -n $DRIVER ]] && kill -0 "$DRIVER" 2>/dev/null; then
        kill -TERM "$DRIVER" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$DRIVER" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$DRIVER" 2>/dev/null && kill -KILL "$DRIVER" 2>/dev/null
        wait "$DRIVER" 2>/dev/null
    fi
    while read -r pid name; do
        [[ -n $pid ]] || continue
        if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -e "$OUT" -e labtools -e tandem; then
            log "stopping leftover $name ($pid)"
            kill -KILL "$pid" 2>/dev/null
        fi
    done <"$OUT/pids"
    # the lab's namespaces are ours (prefix chaos): lab.sh down removes them
    [[ $LAB_MADE -eq 1 ]] && scripts/lab.sh -p "$P" down >/dev/null 2>&1
    log "output kept in $OUT"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# binaries: given, or built from the work tree
if [[ -n ${TANDEM_BIN:-} ]]; then
    TANDEM=$(realpath "$TANDEM_BIN")
else
    log "building bin/tandem"
    CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=chaos -X main.commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
        -o bin/tandem ./cmd/tandem || die "cannot build ./cmd/tandem"
    TANDEM=$ROOT/bin/tandem
fi
if [[ -n ${LABTOOLS_BIN:-} ]]; then
    TOOLS=$(realpath "$LABTOOLS_BIN")
else
    log "building bin/labtools"
    CGO_ENABLED=0 go build -trimpath -o bin/labtools ./scripts/labtools || die "cannot build ./scripts/labtools"
    TOOLS=$ROOT/bin/labtools
fi
[[ -x $TANDEM && -x $TOOLS ]] || die "binaries missing: $TANDEM $TOOLS"
log "tandem: $("$TANDEM" version 2>/dev/null | head -1)"

# the lab: five boxes, the dedicated cable, 500 client addresses
if ip netns list | awk '{print $1}' | grep -qx "$P-sw"; then
    die "a lab '$P' exists already (another chaos run?); 'scripts/lab.sh -p $P down' if it is a leftover"
fi
LAB_MADE=1
scripts/lab.sh -p "$P" up
CLIENTS=${CHAOS_CLIENTS:-500}
[[ $CLIENTS =~ ^[0-9]+$ && $CLIENTS -ge 1 && $CLIENTS -le 500 ]] || die "CHAOS_CLIENTS: 1..500"
for i in $(seq 1 "$CLIENTS"); do echo "addr add 198.18.$((2 + i / 256)).$((i % 256))/23 dev eth0"; done >"$OUT/clients.batch"
ip -n "$P-client" -batch "$OUT/clients.batch"
for lb in lb1 lb2; do ip -n "$P-$lb" route add 198.18.2.0/23 dev eth0; done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log "seed $SEED (CHAOS_SEED=$SEED reproduces the order and timing of the faults); output in $OUT"
# the driver runs inside the client's namespace: its load and probes leave
# from the client; it reaches the pair's control sockets by path. It runs
# at nice -10 with a lazier GC so that its 10 ms probers keep their pace
# (the nodes run SCHED_RR; a prober that stalls inflates the outages).
set +e
GOGC=400 ip netns exec "$P-client" nice -n -10 "$TOOLS" chaos -prefix "$P" -lab "$ROOT/scripts/lab.sh" -tandem "$TANDEM" \
    -out "$OUT" -seed "$SEED" -pulls "${CHAOS_PULLS:-20}" -kills "${CHAOS_KILLS:-2}" \
    -isolates "${CHAOS_ISOLATES:-2}" -features "${CHAOS_FEATURES:-all}" -clients "$CLIENTS" \
    -period "${CHAOS_PERIOD:-2s}" -clients-from 198.18.2.1 &
DRIVER=$!
wait "$DRIVER"
rc=$?
DRIVER=
set -e
log "seed $SEED: exit $rc"
exit $rc
