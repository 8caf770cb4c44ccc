#!/usr/bin/env bash
# The UDP-retry figure (issue 14): DNS and RADIUS clients that do not roll
# over to a second server, through one Tandem node, while every service of
# one server stops. Real dnsmasq and FreeRADIUS on be1 and be2 of the
# namespace lab (scripts/lab.sh).
#
# Usage: scripts/bench-udpretry.sh [-o results.json] [-p PREFIX] [--keep]
#                                  [--only retry|off]
# Env:   TRIALS         trials per mode [10]
#        COUNT          requests per protocol per trial [400: 4 s at 10 ms]
#        INTERVAL       time between a client's requests [10ms]
#        WAIT           how long each request waits for its answer [200ms]
#        STOP           term (dnsmasq and FreeRADIUS stopped: the kernel
#                       answers with port unreachable) or freeze (SIGSTOP:
#                       silence, each lost request waits retry_timeout) [term]
#        RETRY_TIMEOUT  the clusters' retry_timeout in mode retry
#                       [unset: the default for dns and radius checks]
#        TANDEM_BIN     tandem binary [built from ./cmd/tandem]
#        TANDEM_LAB_PREFIX  lab prefix, as -p [tbretry]
#
# Modes: retry (retry_timeout at its default, or RETRY_TIMEOUT) and off
# (retry_timeout: 0, what the issue measured: 18-24 of about 80 probes
# lost in 4 s). The clusters keep the default health checks (every 1 s,
# fall 2), as a new user's config would. Per trial: be1's and be2's
# services running and both servers up in `tandem status`; `labtools
# udpretry` probes the VIP from the client, DNS (who.lab A) and RADIUS
# (Access-Request, PAP) at once, each over 2 sockets (flows) used in turn
# so round robin puts one on each server; once 20 requests of each were
# answered, be1's dnsmasq and FreeRADIUS are stopped (STOP); the probe
# runs to COUNT. Recorded per protocol: failed requests (no answer within
# WAIT), duplicate answers, the requests Tandem re-sent (its status), and
# the added latency of the slow answers (over 20 ms: the retried ones
# that waited; with STOP=term most retries follow the ICMP error at once
# and are not slow), less the median: p99 and max over all trials.
#
# Prints a table per mode and writes JSON with -o. Needs root, iproute2,
# dnsmasq, freeradius and freeradius-utils (apt-get install) and Go. Only
# processes this script started are stopped, by PID; the lab is torn down
# on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

ONLY=""
P=${TANDEM_LAB_PREFIX:-tbretry}
TRIALS=${TRIALS:-10}
COUNT=${COUNT:-400}
INTERVAL=${INTERVAL:-10ms}
WAIT=${WAIT:-200ms}
STOP=${STOP:-term}
VIP=198.18.0.100
SECRET=testing123

BENCH=bench-udpretry
# usage, die, log, bench_opt, num
. "$ROOT/scripts/lib/bench.sh"

while [[ $# -gt 0 ]]; do
    case $1 in
        -p) P=${2:-}; shift 2 || usage ;;
        *) bench_opt "$@" || usage; shift "$SHIFT" ;;
    esac
done
case $ONLY in
    "") MODES=(retry off) ;;
    retry|off) MODES=("$ONLY") ;;
    *) die "--only must be retry or off" ;;
esac
case $STOP in term|freeze) ;; *) die "STOP must be term or freeze" ;; esac
num TRIALS 1 100
num COUNT 50 10000
[[ $(id -u) -eq 0 ]] || die "must run as root"
for c in ip dnsmasq freeradius; do
    command -v "$c" >/dev/null || die "$c missing: apt-get install iproute2 dnsmasq freeradius freeradius-utils"
done

LAB=("$ROOT/scripts/lab.sh" -p "$P")
TMP=$(mktemp -d /tmp/bench-udpretry.XXXXXX)
PIDS=()
declare -A SVC=() # be1-dnsmasq, be1-radius, ... -> PID

cleanup() {
    local rc=$? p
    set +e
    for p in "${SVC[@]}" "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; stop_pid "$p"; done
    "${LAB[@]}" down >/dev/null 2>&1
    if [[ $KEEP -eq 1 || $rc -ne 0 ]]; then
        log "logs kept in $TMP"
    else
        rm -rf "$TMP"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# stop_pid, forget_pid, wait_for
. "$ROOT/scripts/lib/proc.sh"
# build_tandem, build_labtools
. "$ROOT/scripts/lib/build.sh"

build_tandem || exit 1
build_labtools || exit 1

# ---- the services -----------------------------------------------------------

be_answer() { case $1 in be1) echo 198.18.1.1 ;; be2) echo 198.18.1.2 ;; esac; }

start_dnsmasq() {
    ip netns exec "$P-$1" dnsmasq --keep-in-foreground --no-daemon --no-resolv --no-hosts --no-poll \
        --conf-file=/dev/null --port=53 --listen-address=0.0.0.0 --bind-interfaces --user=root \
        --pid-file="$TMP/$1-dnsmasq.pid" --address=/who.lab/"$(be_answer "$1")" \
        --log-facility="$TMP/$1-dnsmasq.log" >>"$TMP/$1-dnsmasq.out" 2>&1 &
    SVC[$1-dnsmasq]=$!
}

# radius_conf BOX: a minimal FreeRADIUS 3 configuration in TMP/BOX-raddb
# (pap and files, the lab's clients, Status-Server for the check); alice's
# Reply-Message names the box.
radius_conf() {
    local d=$TMP/$1-raddb
    mkdir -p "$d"
    sed "s|{{DIR}}|$d|g" "$ROOT/scripts/lib/radiusd.conf" >"$d/radiusd.conf"
    printf 'client lab {\n\tipaddr = 198.18.0.0/24\n\tsecret = %s\n}\n' "$SECRET" >"$d/clients.conf"
    printf 'alice Cleartext-Password := "secret"\n\tReply-Message := "%s"\n' "$1" >"$d/users"
    [[ -r /etc/freeradius/3.0/dictionary ]] && cp /etc/freeradius/3.0/dictionary "$d/dictionary"
    return 0
}

start_radius() {
    [[ -d $TMP/$1-raddb ]] || radius_conf "$1"
    ip netns exec "$P-$1" freeradius -X -d "$TMP/$1-raddb" >>"$TMP/$1-freeradius.log" 2>&1 &
    SVC[$1-radius]=$!
    wait_for 10 grep -q "Ready to process requests" "$TMP/$1-freeradius.log" ||
        die "FreeRADIUS on $1 not ready (see $TMP/$1-freeradius.log)"
}

stop_services() { # stop_services BOX: as STOP says
    local s
    for s in dnsmasq radius; do
        if [[ $STOP == freeze ]]; then
            kill -STOP "${SVC[$1-$s]}"
        else
            kill -TERM "${SVC[$1-$s]}"
        fi
    done
}

restart_services() { # restart_services BOX: stopped or frozen: start anew
    local s
    for s in dnsmasq radius; do
        if [[ -n ${SVC[$1-$s]:-} ]]; then
            kill -CONT "${SVC[$1-$s]}" 2>/dev/null || true
            stop_pid "${SVC[$1-$s]}"
        fi
    done
    : >"$TMP/$1-freeradius.log"
    start_dnsmasq "$1"
    start_radius "$1"
}

# ---- tandem -----------------------------------------------------------------

start_tandem() { # start_tandem MODE
    local retry=""
    if [[ $1 == off ]]; then
        retry="    retry_timeout: 0"
    elif [[ -n ${RETRY_TIMEOUT:-} ]]; then
        retry="    retry_timeout: $RETRY_TIMEOUT"
    fi
    "$TANDEM" keygen >"$TMP/cluster.key"
    chmod 600 "$TMP/cluster.key"
    cat >"$TMP/lb1-$1.yaml" <<CONF
node:
  name: lb1
  api_socket: $TMP/lb1.sock
  log_level: info
cluster:
  bind: 198.18.0.11:7946
  peers: [198.18.0.12:7946]
  secret_file: $TMP/cluster.key
failover:
  interface: eth0
  priority: 150
  advert_interval: 50ms
  vips: [$VIP/24]
clusters:
  - name: dns
    vip: $VIP
    port: 53
    protocol: udp
$retry
    health_check: {type: dns, query: who.lab}
    servers:
      - {name: be1, address: "198.18.0.21:53"}
      - {name: be2, address: "198.18.0.22:53"}
  - name: radius
    vip: $VIP
    port: 1812
    protocol: udp
$retry
    health_check: {type: radius, secret: $SECRET}
    servers:
      - {name: be1, address: "198.18.0.21:1812"}
      - {name: be2, address: "198.18.0.22:1812"}
CONF
    ip netns exec "$P-lb1" "$TANDEM" run --config "$TMP/lb1-$1.yaml" >>"$TMP/lb1-$1.log" 2>&1 &
    TANDEM_PID=$!
    PIDS+=("$TANDEM_PID")
}

all_up() { # MASTER, and no server down
    local st
    st=$("$TANDEM" status --json --socket "$TMP/lb1.sock" 2>/dev/null | tr -d ' \n') || return 1
    [[ $st == *'"state":"MASTER"'* && $st == *'"healthy":true'* && $st != *'"healthy":false'* ]]
}

# ---- the trials -------------------------------------------------------------

"${LAB[@]}" up >/dev/null
for be in be1 be2; do start_dnsmasq "$be"; start_radius "$be"; done

declare -A LOST=() SENT=() DUPS=() RETRIED=() RESENT=()
BASELINE=""
for mode in "${MODES[@]}"; do
    start_tandem "$mode"
    if [[ -z $BASELINE ]]; then
        # The servers' answer time with nothing stopped: what
        # retry_timeout must stay well above.
        wait_for 30 all_up || die "lb1 not MASTER with every server up (see $TMP/lb1-$mode.log)"
        ip netns exec "$P-client" "$LABTOOLS" udpretry -dns "$VIP:53" -radius "$VIP:1812" -secret "$SECRET" \
            -interval "$INTERVAL" -timeout "$WAIT" -count "$COUNT" -flows 2 >"$TMP/baseline.json"
        BASELINE=$(awk '/^  "(dns|radius)":/ { p = $1 } $1 ~ /"p(50|99)_ms":|"max_ms":/ { gsub(/[",:]/, "", $1); gsub(",", "", $2); printf "%s %s %s; ", p, $1, $2 }' "$TMP/baseline.json" | tr -d '"')
        log "answer times, nothing stopped: $BASELINE"
    fi
    : >"$TMP/added-$mode"
    for trial in $(seq 1 "$TRIALS"); do
        wait_for 30 all_up || die "$mode trial $trial: lb1 not MASTER with every server up (see $TMP/lb1-$mode.log)"
        rm -f "$TMP/ready"
        ip netns exec "$P-client" "$LABTOOLS" udpretry -dns "$VIP:53" -radius "$VIP:1812" -secret "$SECRET" \
            -interval "$INTERVAL" -timeout "$WAIT" -count "$COUNT" -flows 2 -warm 20 -ready "$TMP/ready" \
            -added "$TMP/added-$mode" >"$TMP/$mode-$trial.json" &
        probe=$!
        wait_for 10 test -e "$TMP/ready" || die "$mode trial $trial: the probes were not answered"
        stop_services be1
        wait "$probe" || die "$mode trial $trial: labtools udpretry failed"
        for proto in dns radius; do
            # the report is indented JSON: "proto": { ... "failed": N ... }
            read -r sent failed dups < <(awk -v p="\"$proto\":" '
                $1 == p { on = 1 } on && $1 == "\"sent\":" { s = $2 } on && $1 == "\"failed\":" { f = $2 }
                on && $1 == "\"duplicates\":" { d = $2 } on && /^  }/ { on = 0 }
                END { gsub(",", "", s); gsub(",", "", f); gsub(",", "", d); print s, f, d }' "$TMP/$mode-$trial.json")
            SENT[$mode-$proto]=$(( ${SENT[$mode-$proto]:-0} + sent ))
            LOST[$mode-$proto]=$(( ${LOST[$mode-$proto]:-0} + failed ))
            DUPS[$mode-$proto]=$(( ${DUPS[$mode-$proto]:-0} + dups ))
            log "$mode trial $trial $proto: $failed of $sent failed, $dups duplicates"
        done
        restart_services be1
    done
    st=$("$TANDEM" status --json --socket "$TMP/lb1.sock" 2>/dev/null | tr -d ' \n') || st=""
    for proto in dns radius; do
        # the cluster's own count of re-sent requests (absent when 0)
        r=$(sed -n 's/.*"name":"'"$proto"'","vip"[^]]*"retries":\([0-9]*\).*/\1/p' <<<"$st")
        RESENT[$mode-$proto]=${r:-0}
        RETRIED[$mode-$proto]=$(awk -v p="$proto" '$1 == p { print $2 }' "$TMP/added-$mode" | sort -n |
            awk '{ v[NR] = $1 } END { if (NR == 0) { print "0 - -"; exit }
                 i = int(NR * 0.99); if (i < 1) i = 1; printf "%d %.1f %.1f\n", NR, v[i], v[NR] }')
    done
    stop_pid "$TANDEM_PID"
    forget_pid "$TANDEM_PID"
done

# ---- report -----------------------------------------------------------------

printf '\nUDP retry: %d trials per mode, %s requests per protocol each, every %s, each waiting %s; be1 stopped (%s)\n' \
    "$TRIALS" "$COUNT" "$INTERVAL" "$WAIT" "$STOP"
printf 'answer times with nothing stopped (ms): %s\n' "$BASELINE"
printf '%-6s %-7s %8s %8s %6s %8s %8s %14s %14s\n' mode proto sent failed dups re-sent slow added_p99_ms added_max_ms
json="{\"baseline\": \"$BASELINE\", \"trials\": $TRIALS, \"count\": $COUNT, \"interval\": \"$INTERVAL\", \"wait\": \"$WAIT\", \"stop\": \"$STOP\", \"results\": ["
sep=""
for mode in "${MODES[@]}"; do
    for proto in dns radius; do
        read -r n p99 max <<<"${RETRIED[$mode-$proto]}"
        printf '%-6s %-7s %8d %8d %6d %8d %8d %14s %14s\n' "$mode" "$proto" "${SENT[$mode-$proto]}" \
            "${LOST[$mode-$proto]}" "${DUPS[$mode-$proto]}" "${RESENT[$mode-$proto]}" "$n" "$p99" "$max"
        [[ $p99 == - ]] && p99=null && max=null
        json+="$sep{\"mode\": \"$mode\", \"proto\": \"$proto\", \"sent\": ${SENT[$mode-$proto]}, \"failed\": ${LOST[$mode-$proto]}, \"duplicates\": ${DUPS[$mode-$proto]}, \"resent\": ${RESENT[$mode-$proto]}, \"slow\": $n, \"added_p99_ms\": $p99, \"added_max_ms\": $max}"
        sep=", "
    done
done
json+="]}"
if [[ -n $OUT ]]; then
    echo "$json" >"$OUT"
    log "wrote $OUT"
fi
