#!/usr/bin/env bash
# The failover figure: Tandem against keepalived (VRRPv3), side by side, in
# the namespace lab of scripts/lab.sh.
#
# Usage: scripts/bench-failover.sh [--only keepalived|tandem|tandem-hb] [-o results.json]
#                                  [-p PREFIX] [--keep]
# Env:   PULLS           cable pulls per implementation [10]
#        PROBE_INTERVAL  client probe period [10ms]
#        PROBE_TIMEOUT   deadline of one probe [50ms]
#        TANDEM_BIN      tandem binary [built from ./cmd/tandem into a temp dir]
#        TANDEM_LAB_PREFIX  lab prefix, as -p [tbench]
#
# For each implementation: lab up; a static responder (labtools respond) on
# port 8080 of lb1 and lb2; the pair started (lb1 priority 150, lb2 100,
# advert 50 ms, VIP 198.18.0.100/24 on eth0); wait for lb1 to hold the VIP
# and answer. Then PULLS times: a probe from the client every 10 ms, pull
# lb1's cable, wait until lb2 answers (3 s at most), plug lb1 back, wait for
# lb1 to take the VIP back and answer (preempt) and 1.5 s more, stop the
# probe. tandem-hb is Tandem with the lab's dedicated cable (hb0) as a
# second heartbeat path (cluster.heartbeat_paths): lb1 reports its FAULT
# over it and lb2 takes over at once. Recorded: the outage of the pull (first failed probe to first
# answered one, as LAB-NOTES) and the failed probes after the plug back.
#
# Prints a table (median/min/max pull outage, plug-back failed probes,
# tandem/keepalived ratio of medians) and writes JSON with -o. Needs root,
# iproute2 and keepalived (scripts/deps.sh) and Go. Only processes this
# script started are stopped, by PID; the lab is torn down on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

ONLY=""
P=${TANDEM_LAB_PREFIX:-tbench}
PULLS=${PULLS:-10}
PROBE_INTERVAL=${PROBE_INTERVAL:-10ms}
PROBE_TIMEOUT=${PROBE_TIMEOUT:-50ms}
VIP=198.18.0.100
PORT=8080

BENCH=bench-failover
# usage, die, log, bench_opt, num
. "$ROOT/scripts/lib/bench.sh"

while [[ $# -gt 0 ]]; do
    case $1 in
        -p) P=${2:-}; shift 2 || usage ;;
        *) bench_opt "$@" || usage; shift "$SHIFT" ;;
    esac
done
case $ONLY in
    "") IMPLS=(keepalived tandem tandem-hb) ;;
    keepalived|tandem|tandem-hb) IMPLS=("$ONLY") ;;
    *) die "--only must be keepalived, tandem or tandem-hb" ;;
esac
num PULLS 1 200
[[ $(id -u) -eq 0 ]] || die "must run as root"
command -v ip >/dev/null || die "iproute2 missing: run scripts/deps.sh"

LAB=("$ROOT/scripts/lab.sh" -p "$P")
TMP=$(mktemp -d /tmp/bench-failover.XXXXXX)
PIDS=()

cleanup() {
    local rc=$? p
    set +e
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    "${LAB[@]}" down >/dev/null 2>&1
    if [[ $KEEP -eq 1 || $rc -ne 0 ]]; then
        log "logs and events kept in $TMP"
    else
        rm -rf "$TMP"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# stop_pid, forget_pid, wait_for, set_nice
. "$ROOT/scripts/lib/proc.sh"
# build_tandem, build_labtools
. "$ROOT/scripts/lib/build.sh"
WAIT_STEP=0.01

now() { date -u +%Y-%m-%dT%H:%M:%S.%NZ; }

holds_vip() { ip -n "$P-$1" -br addr show dev eth0 2>/dev/null | grep -qw "$VIP/24"; }

answers() { # answers BOX: a short probe from the client is answered by BOX
    ip netns exec "$P-client" "$LABTOOLS" probe -q -target "$VIP:$PORT" \
        -duration 60ms -interval 20ms -timeout 50ms 2>/dev/null | grep -q "\"$1\":"
}

# ---- build helpers ----------------------------------------------------------

build_labtools || exit 1

# ---- the pairs --------------------------------------------------------------

node_addr() { case $1 in lb1) echo 198.18.0.11 ;; lb2) echo 198.18.0.12 ;; esac; }
hb_addr() { case $1 in lb1) echo 198.19.0.11 ;; lb2) echo 198.19.0.12 ;; esac; }
node_prio() { case $1 in lb1) echo 150 ;; lb2) echo 100 ;; esac; }
peer_of() { case $1 in lb1) echo lb2 ;; lb2) echo lb1 ;; esac; }

start_keepalived() {
    command -v keepalived >/dev/null || { log "keepalived missing: run scripts/deps.sh"; return 1; }
    local n dir
    for n in lb1 lb2; do
        dir=$TMP/keepalived-$n
        mkdir -p "$dir"
        cat >"$dir/keepalived.conf" <<CONF
global_defs {
    router_id $n
    vrrp_version 3
    script_user root
    enable_script_security
}
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority $(node_prio $n)
    advert_int 0.05
    garp_master_delay 0
    garp_master_repeat 3
    virtual_ipaddress {
        $VIP/24 dev eth0
    }
}
CONF
        ip netns exec "$P-$n" keepalived -n -l -D -P -f "$dir/keepalived.conf" \
            -p "$dir/keepalived.pid" -r "$dir/vrrp.pid" >"$TMP/keepalived-$n.log" 2>&1 &
        PIDS+=($!)
        PAIR+=($!)
    done
}

start_tandem_hb() { HB=1 start_tandem; }

start_tandem() {
    build_tandem || return 1
    local n dir key=$TMP/cluster.key paths
    "$TANDEM" keygen >"$key" || { log "tandem keygen failed"; return 1; }
    chmod 600 "$key"
    for n in lb1 lb2; do
        dir=$TMP/tandem-$n
        mkdir -p "$dir"
        paths=""
        if [[ ${HB:-0} -eq 1 ]]; then
            paths="  heartbeat_paths: [{bind: \"$(hb_addr $n):7946\", peer: \"$(hb_addr "$(peer_of $n)"):7946\"}]"
        fi
        cat >"$dir/tandem.yaml" <<CONF
node:
  name: $n
  api_socket: $dir/tandem.sock
  log_level: info
cluster:
  bind: $(node_addr $n):7946
  peers: [$(node_addr "$(peer_of $n)"):7946]
  secret_file: $key
$paths
failover:
  interface: eth0
  priority: $(node_prio $n)
  preempt: true
  advert_interval: 50ms
  vips: [$VIP/24]
  garp:
    count: 3
    interval: 100ms
CONF
        if ! "$TANDEM" validate --config "$dir/tandem.yaml" >"$TMP/tandem-$n.validate" 2>&1; then
            log "tandem validate failed for $n:"; cat "$TMP/tandem-$n.validate" >&2
            return 1
        fi
        ip netns exec "$P-$n" "$TANDEM" run --config "$dir/tandem.yaml" \
            >"$TMP/tandem-$n.log" 2>&1 &
        PIDS+=($!)
        PAIR+=($!)
    done
}

show_logs() {
    local f
    for f in "$TMP"/"$1"-lb*.log; do
        [[ -f $f ]] || continue
        echo "--- tail of $f" >&2
        tail -n 15 "$f" >&2
    done
}

# ---- one implementation -----------------------------------------------------

# seen_after_lb2 EV: lb1 answered after lb2 did
seen_lb1_after_lb2() {
    awk '/"server":"lb2"/{s=1} s && /"server":"lb1"/{f=1} END{exit !f}' "$1"
}

# PAIR: the PIDs of the current implementation's daemons and responders.
PAIR=()

# bench IMPL: runs the pulls; writes $TMP/IMPL.runs (one line per pull:
# pull_ms pull_outages lb2_served plug_failed probes) or returns non-zero.
bench() {
    local impl=$1 i
    PAIR=()
    "${LAB[@]}" up || return 1
    local n
    for n in lb1 lb2; do
        ip netns exec "$P-$n" "$LABTOOLS" respond -listen "0.0.0.0:$PORT" -name "$n" \
            >"$TMP/respond-$impl-$n.log" 2>&1 &
        PIDS+=($!)
        PAIR+=($!)
    done
    "start_${impl//-/_}" || return 1
    log "$impl: waiting for lb1 to hold $VIP and answer"
    if ! wait_for 15 holds_vip lb1 || ! wait_for 5 answers lb1; then
        log "$impl: lb1 did not take $VIP and answer within 20 s"
        show_logs "$impl"
        return 1
    fi
    if holds_vip lb2; then
        wait_for 5 bash -c "! ip -n $P-lb2 -br addr show dev eth0 | grep -qw $VIP/24" ||
            log "$impl: warning: lb2 still holds $VIP too"
    fi
    : >"$TMP/$impl.runs"
    for i in $(seq 1 "$PULLS"); do
        local ev=$TMP/$impl-$i.jsonl sum=$TMP/$impl-$i.summary.json probe t_pull t_plug served=true
        ip netns exec "$P-client" "$LABTOOLS" probe -q -target "$VIP:$PORT" \
            -interval "$PROBE_INTERVAL" -timeout "$PROBE_TIMEOUT" -duration 60s \
            -out "$ev" >"$sum" 2>>"$TMP/probe-$impl.log" &
        probe=$!
        PIDS+=($probe)
        if ! wait_for 2 grep -qs '"event":"ok","seq":[0-9]*,"server":"lb1"' "$ev"; then
            log "$impl: pull $i: the probe does not see lb1 answer before the pull"
            show_logs "$impl"
            return 1
        fi
        sleep 0.2
        t_pull=$(now)
        "${LAB[@]}" pull lb1
        if ! wait_for 3 grep -qs '"server":"lb2"' "$ev"; then
            served=false
            log "$impl: pull $i: lb2 did not answer within 3 s"
        fi
        t_plug=$(now)
        "${LAB[@]}" plug lb1
        # Tandem's link hold-down (failover.link_holddown) delays the
        # preempt by 1 s, doubled per pull in the last 30 s (8 s at most).
        if ! wait_for 20 holds_vip lb1 || ! wait_for 5 seen_lb1_after_lb2 "$ev"; then
            log "$impl: pull $i: lb1 did not take $VIP back and answer within 25 s"
            stop_pid "$probe"; forget_pid "$probe"
            show_logs "$impl"
            return 1
        fi
        sleep 1.5
        stop_pid "$probe"; forget_pid "$probe"
        # the pull's outage: outages starting between just before the pull
        # (a probe launched a few ms before may be the first to fail) and
        # the plug; plug-back: failed probes in outages starting after it
        local win pull_ms pull_n plug_failed probes
        win=$(date -u -d "${t_pull%Z} UTC - 0.1 seconds" +%Y-%m-%dT%H:%M:%S.%NZ)
        pull_ms=$("$LABTOOLS" outage -in "$ev" -after "$win" -before "$t_plug" -print total_ms)
        pull_n=$("$LABTOOLS" outage -in "$ev" -after "$win" -before "$t_plug" -print count)
        plug_failed=$("$LABTOOLS" outage -in "$ev" -after "$t_plug" -print failed)
        probes=$(sed -n 's/^{"probes":\([0-9]*\).*/\1/p' "$sum")
        printf '%s %s %s %s %s\n' "$pull_ms" "$pull_n" "$served" "$plug_failed" "${probes:-0}" >>"$TMP/$impl.runs"
        log "$impl: pull $i/$PULLS: outage ${pull_ms} ms (outages: $pull_n, lb2 served: $served), plug back: $plug_failed failed probes"
    done
    for n in "${PAIR[@]}"; do stop_pid "$n"; forget_pid "$n"; done
    PAIR=()
    "${LAB[@]}" down >/dev/null
    return 0
}

# ---- statistics and report --------------------------------------------------

# stats FILE: "median min max plug_total unserved n" over a .runs file
stats() {
    awk '{ v[NR] = $1; pf += $4; if ($3 != "true") us++ }
         END {
           n = NR
           for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
           med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
           printf "%.1f %.1f %.1f %d %d %d\n", med, v[1], v[n], pf, us, n
         }' "$1"
}

impl_json() { # impl_json IMPL
    local f=$TMP/$1.runs med min max pf us n
    read -r med min max pf us n < <(stats "$f")
    printf '{"pulls":%d,"median_ms":%s,"min_ms":%s,"max_ms":%s,"plug_failed_total":%d,"unserved":%d,"runs":[' \
        "$n" "$med" "$min" "$max" "$pf" "$us"
    awk '{ printf "%s{\"pull_ms\":%s,\"pull_outages\":%d,\"lb2_served\":%s,\"plug_failed\":%d,\"probes\":%d}", (NR > 1 ? "," : ""), $1, $2, $3, $4, $5 }' "$f"
    printf ']}'
}

declare -A RESULT=()
for impl in "${IMPLS[@]}"; do
    log "=== $impl: $PULLS pulls"
    if bench "$impl"; then
        RESULT[$impl]=ok
    else
        RESULT[$impl]=error
        FAILED=1
        for p in "${PAIR[@]}"; do stop_pid "$p"; forget_pid "$p"; done
        PAIR=()
        "${LAB[@]}" down >/dev/null 2>&1 || true
        log "=== $impl: FAILED (see above)"
    fi
done

echo
printf '%-11s %6s %10s %8s %8s %9s %13s\n' impl pulls median_ms min_ms max_ms unserved plug_failed
declare -A MED=()
for impl in "${IMPLS[@]}"; do
    if [[ ${RESULT[$impl]} != ok ]]; then
        printf '%-11s %6s\n' "$impl" "error"
        continue
    fi
    read -r med min max pf us n < <(stats "$TMP/$impl.runs")
    MED[$impl]=$med
    printf '%-11s %6d %10s %8s %8s %9d %13d\n' "$impl" "$n" "$med" "$min" "$max" "$us" "$pf"
done
RATIO=null
if [[ -n ${MED[tandem]:-} && -n ${MED[keepalived]:-} ]]; then
    RATIO=$(awk -v a="${MED[tandem]}" -v b="${MED[keepalived]}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "null" }')
    echo "tandem/keepalived median pull outage: $RATIO"
fi
RATIO_HB=null
if [[ -n ${MED[tandem-hb]:-} && -n ${MED[keepalived]:-} ]]; then
    RATIO_HB=$(awk -v a="${MED[tandem-hb]}" -v b="${MED[keepalived]}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "null" }')
    echo "tandem-hb/keepalived median pull outage: $RATIO_HB"
fi
echo "(pull: first failed probe to first answered one, ms; plug_failed: failed probes after plugging lb1 back, all pulls; probe every $PROBE_INTERVAL, timeout $PROBE_TIMEOUT)"

results_file() {
    local sep="" impl
    printf '{"pulls":%d,"probe_interval":"%s","probe_timeout":"%s","advert_interval_ms":50,"results":{' \
        "$PULLS" "$PROBE_INTERVAL" "$PROBE_TIMEOUT"
    for impl in "${IMPLS[@]}"; do
        printf '%s"%s":' "$sep" "$impl"
        sep=","
        if [[ ${RESULT[$impl]} == ok ]]; then impl_json "$impl"; else printf '{"error":true}'; fi
    done
    printf '},"ratio_median":%s,"ratio_median_hb":%s}\n' "$RATIO" "$RATIO_HB"
}
write_json results_file
exit $FAILED
