#!/usr/bin/env bash
# make demo: a Tandem pair in network namespaces, serving, failing over and
# showing its status. Steps:
#   1. lab up: lb1, lb2, a client and two backends on a bridge (198.18.0.0/24)
#   2. the pair starts; lb1 (priority 150) becomes master and holds the VIP
#   3. a client probes the VIP every 10 ms; `tandem status` of both boxes
#   4. lb1's cable is pulled: lb2 takes over; status and the timeline
#   5. the cable is plugged back: lb1 preempts; the client's view
#   6. everything is torn down
# Exits 0 only when every step behaved. Needs root; run through `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

P=${TANDEM_LAB_PREFIX:-tdemo}
BIN=${TANDEM_BIN:-bin/tandem}
TOOLS=${LABTOOLS_BIN:-bin/labtools}
[[ $(id -u) -eq 0 ]] || { echo "demo: must run as root (network namespaces)" >&2; exit 1; }
[[ -x $BIN && -x $TOOLS ]] || { echo "demo: build first: make build" >&2; exit 1; }

TMP=$(mktemp -d /tmp/tandem-demo.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    scripts/lab.sh -p "$P" down >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

START=$(date +%s.%N)
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ok() { printf '   ok: %s\n' "$*"; }
fail() { printf '   FAILED: %s\n' "$*"; echo "   logs:"; tail -n 20 "$TMP"/lb*.log | sed 's/^/     /'; exit 1; }

state() { "$BIN" status --socket "$TMP/$1.sock" --json 2>/dev/null | sed -n 's/^  "state": "\(.*\)",/\1/p'; }
holds() { ip -n "$P-$1" -br addr show dev eth0 | grep -q '198\.18\.0\.100/'; }
wait_until() { # SECONDS DESCRIPTION COMMAND...
    local secs=$1 what=$2; shift 2
    local end=$(( $(date +%s%N) + secs * 1000000000 ))
    until "$@"; do
        (( $(date +%s%N) < end )) || fail "timed out after ${secs}s waiting for $what"
        sleep 0.02
    done
}
pair_is() { [[ $(state lb1) == "$1" && $(state lb2) == "$2" ]]; }

step "1. lab: lb1, lb2, client, be1, be2 in namespaces '$P-*', bridge in '$P-sw'"
scripts/lab.sh -p "$P" up
"$BIN" keygen >"$TMP/cluster.key"
ok "cluster key generated with 'tandem keygen'"

step "2. the pair starts (lb1 priority 150, lb2 priority 100, VIP 198.18.0.100, adverts every 50ms)"
for n in lb1 lb2; do
    if [[ $n == lb1 ]]; then prio=150 self=198.18.0.11 peer=198.18.0.12; else prio=100 self=198.18.0.12 peer=198.18.0.11; fi
    cat >"$TMP/$n.yaml" <<CONF
node:
  name: $n
  api_socket: $TMP/$n.sock
cluster:
  bind: $self:7946
  peers: [$peer:7946]
  secret_file: $TMP/cluster.key
failover:
  interface: eth0
  priority: $prio
  preempt: true
  advert_interval: 50ms
  vips: [198.18.0.100/24]
CONF
    "$BIN" validate --config "$TMP/$n.yaml"
    # A tiny service on each box answers with the box's name.
    ip netns exec "$P-$n" "$TOOLS" respond -listen 0.0.0.0:8080 -name "$n" >/dev/null 2>&1 &
    PIDS+=($!)
    ip netns exec "$P-$n" "$BIN" run --config "$TMP/$n.yaml" >"$TMP/$n.log" 2>&1 &
    PIDS+=($!)
done
wait_until 10 "lb1 MASTER, lb2 BACKUP" pair_is MASTER BACKUP
wait_until 5 "the VIP on lb1" holds lb1
ok "lb1 is MASTER and holds 198.18.0.100; lb2 is BACKUP"

step "3. a client probes 198.18.0.100:8080 every 10ms; status of both boxes"
ip netns exec "$P-client" "$TOOLS" probe -q -target 198.18.0.100:8080 -interval 10ms -timeout 50ms \
    -duration 60s -out "$TMP/probe.jsonl" >"$TMP/probe.json" 2>/dev/null &
PROBE=$!
PIDS+=($PROBE)
sleep 1
"$BIN" status --socket "$TMP/lb1.sock" --socket "$TMP/lb2.sock"

step "4. pulling lb1's cable (ip -n $P-sw link set p-lb1 down)"
PULL=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
scripts/lab.sh -p "$P" pull lb1
wait_until 5 "lb2 to take over" pair_is FAULT MASTER
wait_until 5 "the VIP on lb2" holds lb2
holds lb1 && fail "lb1 still holds the VIP"
ok "lb2 is MASTER and holds the VIP; lb1 is FAULT and released it"
sleep 0.5
"$BIN" status --socket "$TMP/lb2.sock"

step "5. plugging lb1's cable back: lb1 preempts"
PLUG=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
scripts/lab.sh -p "$P" plug lb1
wait_until 5 "lb1 to preempt" pair_is MASTER BACKUP
wait_until 5 "the VIP back on lb1 only" bash -c "ip -n $P-lb1 -br addr show dev eth0 | grep -q 198.18.0.100/ && ! ip -n $P-lb2 -br addr show dev eth0 | grep -q 198.18.0.100/"
ok "lb1 is MASTER again; lb2 released the VIP"
sleep 0.5
kill -TERM "$PROBE"; wait "$PROBE" || true

step "the client's view"
pull_ms=$("$TOOLS" outage -in "$TMP/probe.jsonl" -after "$PULL" -before "$PLUG" -print max_ms)
plug_failed=$("$TOOLS" outage -in "$TMP/probe.jsonl" -after "$PLUG" -print failed)
served=$(sed -n 's/.*"servers":\({[^}]*}\).*/\1/p' "$TMP/probe.json")
printf '   cable pull: outage %s ms (first failed to first answered probe)\n' "$pull_ms"
printf '   plug back:  %s failed probes\n' "$plug_failed"
printf '   answered by: %s\n' "$served"

step "the failover timeline (lb2's view, then lb1's)"
"$BIN" status --socket "$TMP/lb2.sock" | sed -n '/^Transitions/,$p'
"$BIN" status --socket "$TMP/lb1.sock" | sed -n '/^Transitions/,$p'

step "6. tearing down"
cleanup
trap - EXIT
awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN { printf "\ndemo: every step behaved (%.1fs)\n", e - s }'
