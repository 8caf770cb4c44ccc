#!/usr/bin/env bash
# Soak (issue 7 part 5): a healthy pair under a steady, moderate load for
# SOAK_DURATION, sampled every SOAK_SAMPLE. Goal: memory and goroutines
# flat, no transition, no failed request.
#
#   lab 'soak' (scripts/lab.sh -p soak), torn down on any exit
#   be1, be2: nginx on :80 (HTTP) and `labtools respond -udp` on :5300
#   lb1 (priority 150) and lb2 (100), adverts every 50 ms, VIP 198.18.0.100:
#     web  :80/tcp    least_conn, persistence source_ip, http health check
#     echo :5300/udp  round_robin, udp health check
#   client: `labtools probe` chunks of at most SOAK_SAMPLE each, back to back:
#     HTTP GET every SOAK_HTTP_INTERVAL [5ms, 200/s], a new connection each
#     UDP query every SOAK_UDP_INTERVAL [10ms, 100/s], a new flow each
#   every SOAK_SAMPLE, from both nodes: RSS and open fds (/proc/PID),
#     goroutines and heap in use (node.metrics_listen, scraped inside the
#     box's namespace), transitions and state (`tandem status --json`),
#     the client's requests so far (finished chunks: they lag by at most one
#     sample; the last row has them all)
# Expected ramp: the master's fds and RSS rise in the first 30 s, one socket
# per live UDP flow (a flow per query, ended after 30 s idle), then level
# off; judge flatness by the slope over the second half.
#
# Usage: scripts/soak.sh [-o DIR] [-p PREFIX]
#   -o DIR     output: soak.csv, summary.txt, node and probe logs
#              [a new /tmp/tandem-soak.XXXXXX, printed at the end]
#   -p PREFIX  lab prefix [soak]
# Env:   SOAK_DURATION [1h], SOAK_SAMPLE [30s] (s, m or h; at most 24h),
#        SOAK_HTTP_INTERVAL [5ms], SOAK_UDP_INTERVAL [10ms],
#        SOAK_TIMEOUT [1s] (deadline of one request),
#        SOAK_MAX_GOROUTINE_GROWTH [10] (median of the last 3 samples minus
#        median of the first 3 under load, per node),
#        SOAK_MAX_RSS_SLOPE [unset] (KiB/min over the second half, per node),
#        TANDEM_BIN and LABTOOLS_BIN, both or neither [built from the work
#        tree, or HEAD when the work tree does not build]; copied to DIR/bin
# Exits 0 only with no transition after start-up (lb1 still MASTER, lb2
# BACKUP), no failed request or query, both nodes alive, no ERROR in their
# logs under load, and goroutine growth (and RSS slope, if set) within the
# limit. WARN lines under load are shown, not failed.
# Needs root; not part of `make test`. Traffic stays inside the lab
# (198.18.0.0/24) and each node's loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/proc.sh
. scripts/lib/nginx.sh

log() { echo "soak: $*" >&2; }
die() { log "$*"; exit 1; }
usage() { sed -n '/^# Usage:/,/^# Needs root/{s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }

P=soak
OUT=
while getopts ":o:p:h" opt; do
    case $opt in
        o) OUT=$OPTARG ;;
        p) P=$OPTARG ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || usage
[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces)"

# secs D: D (N, Ns, Nm or Nh) in whole seconds
secs() {
    local d=$1
    case $d in
        *h) d=$(( ${d%h} * 3600 )) ;;
        *m) d=$(( ${d%m} * 60 )) ;;
        *s) d=${d%s} ;;
    esac
    [[ $d =~ ^[0-9]+$ ]] || return 1
    echo "$d"
}
DURATION=$(secs "${SOAK_DURATION:-1h}") || die "bad SOAK_DURATION '${SOAK_DURATION:-}' (e.g. 1h, 3m, 90s)"
SAMPLE=$(secs "${SOAK_SAMPLE:-30s}") || die "bad SOAK_SAMPLE '${SOAK_SAMPLE:-}' (e.g. 30s)"
(( DURATION >= 30 && DURATION <= 86400 )) || die "SOAK_DURATION must be 30s..24h"
(( SAMPLE >= 1 && SAMPLE * 4 <= DURATION )) || die "SOAK_SAMPLE must be at least 1s and at most a quarter of SOAK_DURATION"
HTTP_INTERVAL=${SOAK_HTTP_INTERVAL:-5ms}
UDP_INTERVAL=${SOAK_UDP_INTERVAL:-10ms}
REQ_TIMEOUT=${SOAK_TIMEOUT:-1s}
MAX_GR=${SOAK_MAX_GOROUTINE_GROWTH:-10}
MAX_RSS_SLOPE=${SOAK_MAX_RSS_SLOPE:-}
VIP=198.18.0.100
METRICS=127.0.0.1:9110 # inside each lb's namespace

if [[ -z $OUT ]]; then OUT=$(mktemp -d /tmp/tandem-soak.XXXXXX); else mkdir -p "$OUT"; fi
OUT=$(cd "$OUT" && pwd)
(( ${#OUT} < 80 )) || die "-o path too long for the nodes' unix sockets: $OUT"
rm -f "$OUT"/soak.csv "$OUT"/summary.txt "$OUT"/*.summaries "$OUT"/*.sock

PIDS=()
declare -A NODEPID
cleanup() {
    local rc=$? i
    set +e
    trap - INT TERM
    # newest first: the load loops before the nodes, the nodes before the backends
    for (( i=${#PIDS[@]}-1; i>=0; i-- )); do stop_pid "${PIDS[i]}"; done
    scripts/lab.sh -p "$P" down >/dev/null 2>&1
    log "output in $OUT"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TANDEM=${TANDEM_BIN:-}
LABTOOLS=${LABTOOLS_BIN:-}
# Binaries live in $OUT/bin for the whole run: bin/ of the shared work tree
# may be rebuilt by someone else meanwhile.
mkdir -p "$OUT/bin"
# build_in DIR: tandem and labtools from the source tree DIR into $OUT/bin
build_in() {
    (cd "$1" && CGO_ENABLED=0 go build -trimpath -ldflags "-X main.commit=$(git -C "$ROOT" rev-parse --short=12 HEAD)" \
        -o "$OUT/bin/tandem" ./cmd/tandem && CGO_ENABLED=0 go build -trimpath -o "$OUT/bin/labtools" ./scripts/labtools)
}
ROOT=$(pwd)
if [[ -n $TANDEM && -n $LABTOOLS ]]; then
    cp "$TANDEM" "$OUT/bin/tandem" && cp "$LABTOOLS" "$OUT/bin/labtools" || die "cannot copy TANDEM_BIN and LABTOOLS_BIN"
    SOURCE="TANDEM_BIN=$TANDEM"
else
    # the work tree is shared and may be mid-edit: fall back to HEAD
    log "building tandem and labtools"
    SOURCE="work tree at $(git rev-parse --short HEAD)"
    [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]] && SOURCE+=" + uncommitted changes"
    if ! build_in . 2>"$OUT/build.log"; then
        log "the work tree does not build ($(head -2 "$OUT/build.log" | tr '\n' ' ')); using HEAD"
        rm -rf "$OUT/src"; mkdir -p "$OUT/src"
        git archive HEAD | tar -x -C "$OUT/src" || die "git archive HEAD failed"
        build_in "$OUT/src" || die "HEAD does not build either"
        SOURCE="HEAD $(git rev-parse --short HEAD)"
    fi
fi
TANDEM=$OUT/bin/tandem; LABTOOLS=$OUT/bin/labtools
[[ -x $TANDEM && -x $LABTOOLS ]] || die "tandem or labtools not executable"

# in_ns BOX CMD...: in the foreground only (in the background $! would be
# a subshell's, not CMD's: background commands use ip netns exec directly)
in_ns() { local box=$1; shift; ip netns exec "$P-$box" "$@"; }

# ---- lab and backends
scripts/lab.sh -p "$P" up
for be in be1 be2; do
    d=$OUT/nginx-$be
    nginx_backend_conf "$d" "$be"
    ip netns exec "$P-$be" nginx -c "$d/nginx.conf" -p "$d" >"$d/stderr.log" 2>&1 & PIDS+=($!)
    ip netns exec "$P-$be" "$LABTOOLS" respond -listen 0.0.0.0:5300 -name "$be" -udp >"$OUT/respond-$be.log" 2>&1 & PIDS+=($!)
done

# ---- the pair
"$TANDEM" keygen >"$OUT/cluster.key"
for n in lb1 lb2; do
    if [[ $n == lb1 ]]; then prio=150 self=198.18.0.11 peer=198.18.0.12; else prio=100 self=198.18.0.12 peer=198.18.0.11; fi
    cat >"$OUT/$n.yaml" <<CONF
node:
  name: $n
  api_socket: $OUT/$n.sock
  metrics_listen: "$METRICS"
cluster:
  bind: $self:7946
  peers: [$peer:7946]
  secret_file: $OUT/cluster.key
failover:
  interface: eth0
  priority: $prio
  preempt: true
  advert_interval: 50ms
  vips: [$VIP/24]
clusters:
  - name: web
    vip: $VIP
    port: 80
    algorithm: least_conn
    persistence: {mode: source_ip, mask: 32, timeout: 10m}
    health_check: {type: http, path: /, interval: 1s, timeout: 500ms, rise: 2, fall: 2}
    servers:
      - {name: be1, address: "198.18.0.21:80"}
      - {name: be2, address: "198.18.0.22:80"}
  - name: echo
    vip: $VIP
    port: 5300
    protocol: udp
    health_check: {type: udp, send: "probe\n", expect_body: "^be", interval: 1s, timeout: 500ms, rise: 2, fall: 2}
    servers:
      - {name: be1, address: "198.18.0.21:5300"}
      - {name: be2, address: "198.18.0.22:5300"}
CONF
    "$TANDEM" validate --config "$OUT/$n.yaml" >/dev/null
    ip netns exec "$P-$n" "$TANDEM" run --config "$OUT/$n.yaml" >"$OUT/$n.log" 2>&1 &
    NODEPID[$n]=$!; PIDS+=($!)
done

status_json() { "$TANDEM" status --socket "$OUT/$1.sock" --json 2>/dev/null; }
json_top() { sed -n "s/^  \"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}\$/\1/p" <<<"$1"; } # JSON KEY: a top-level scalar
state() { json_top "$(status_json "$1")" state; }
ready() { # lb1 MASTER holding the VIP, lb2 BACKUP, every server healthy on both, persistence in sync
    local j1 j2
    j1=$(status_json lb1) && j2=$(status_json lb2) || return 1
    [[ $(json_top "$j1" state) == MASTER && $(json_top "$j2" state) == BACKUP ]] || return 1
    ip -n "$P-lb1" -br addr show dev eth0 | grep -q "$VIP/" || return 1
    ! grep -q '"healthy": false' <<<"$j1$j2" && grep -q '"state": "IN SYNC"' <<<"$j1"
}
WAIT_STEP=0.1 wait_for 20 ready || { tail -n 20 "$OUT"/lb*.log >&2; die "the pair did not settle (lb1 $(state lb1), lb2 $(state lb2))"; }
# start-up transitions may trail the first settled moment: settle, check again
sleep 2
ready || die "the pair did not stay settled (lb1 $(state lb1), lb2 $(state lb2))"
for n in lb1 lb2; do
    [[ $(cat "/proc/${NODEPID[$n]}/comm" 2>/dev/null) == tandem ]] || die "pid ${NODEPID[$n]} of $n is not tandem"
done
declare -A T0
for n in lb1 lb2; do T0[$n]=$(json_top "$(status_json "$n")" transitions_total); done
log "pair up: lb1 MASTER, lb2 BACKUP; start-up transitions lb1 ${T0[lb1]}, lb2 ${T0[lb2]}"

# ---- load: probe chunks of at most SAMPLE seconds each until END; each
# appends its one-line JSON summary to $OUT/NAME.summaries. Bounded: at
# most DURATION/SAMPLE+1 chunks, each with its own -duration.
START_NS=$(date +%s%N)
START=$(( START_NS / 1000000000 ))
START_TS=$(date -u -d "@$START.${START_NS: -9:3}" +%Y-%m-%dT%H:%M:%S.%3N)
END=$(( START + DURATION ))
load_loop() { # NAME PROBE-ARGS...
    local name=$1 i left d child=
    shift
    trap '[[ -n $child ]] && kill -TERM $child 2>/dev/null; [[ -n $child ]] && wait $child 2>/dev/null; exit 0' TERM
    for (( i=0; i <= DURATION / SAMPLE; i++ )); do
        left=$(( END - $(date +%s) ))
        (( left > 0 )) || break
        d=$(( left < SAMPLE ? left : SAMPLE ))
        ip netns exec "$P-client" "$LABTOOLS" probe -q -target "$@" -timeout "$REQ_TIMEOUT" -duration "${d}s" \
            >>"$OUT/$name.summaries" 2>>"$OUT/$name.err" &
        child=$!
        wait "$child" || echo "chunk $i: probe exited $?" >>"$OUT/$name.err"
        child=
    done
}
load_loop http "$VIP:80" -send 'GET / HTTP/1.0\r\n\r\n' -interval "$HTTP_INTERVAL" & PIDS+=($!)
LOAD_PIDS=($!)
load_loop udp "$VIP:5300" -udp -interval "$UDP_INTERVAL" & PIDS+=($!)
LOAD_PIDS+=($!)
log "load: HTTP every $HTTP_INTERVAL and UDP every $UDP_INTERVAL for ${DURATION}s, sampling every ${SAMPLE}s into $OUT/soak.csv"

# totals NAME: "OK FAILED" over the finished chunks
totals() {
    local f=$OUT/$1.summaries
    [[ -f $f ]] || { echo "0 0"; return; }
    sed -n 's/^{"probes":[0-9]*,"ok":\([0-9]*\),"failed":\([0-9]*\).*/\1 \2/p' "$f" |
        awk '{ ok += $1; bad += $2 } END { printf "%d %d\n", ok, bad }'
}

DEAD=0
TCK=$(getconf CLK_TCK)
echo "time,elapsed_s,node,rss_kib,goroutines,heap_kib,fds,transitions,state,requests_ok,requests_failed,udp_ok,udp_failed,cpu_s" >"$OUT/soak.csv"
sample() {
    local now el n pid rss fds m gr heap j tr st h u cpu
    now=$(date -u +%Y-%m-%dT%H:%M:%SZ); el=$(( $(date +%s) - START ))
    h=$(totals http); u=$(totals udp)
    for n in lb1 lb2; do
        pid=${NODEPID[$n]}
        if ! kill -0 "$pid" 2>/dev/null; then
            (( DEAD )) || log "$n (pid $pid) is gone"
            DEAD=1; continue
        fi
        rss=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status" 2>/dev/null || true)
        cpu=$(awk -v t="$TCK" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$pid/stat" 2>/dev/null || true)
        fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        m=$(in_ns "$n" curl -s -m 2 "http://$METRICS/metrics" || true)
        gr=$(awk '$1 == "go_goroutines" { print $2 }' <<<"$m")
        heap=$(awk '$1 == "go_memstats_heap_inuse_bytes" { printf "%d", $2 / 1024 }' <<<"$m")
        j=$(status_json "$n" || true)
        tr=$(json_top "$j" transitions_total); st=$(json_top "$j" state)
        [[ -n $tr ]] && tr=$(( tr - T0[$n] ))
        echo "$now,$el,$n,$rss,${gr:-},${heap:-},$fds,${tr:-},${st:-},${h% *},${h#* },${u% *},${u#* },${cpu:-}" >>"$OUT/soak.csv"
    done
}

next=$START
while :; do
    sample
    next=$(( next + SAMPLE ))
    (( next < END )) || break
    sleep $(( next - $(date +%s) > 0 ? next - $(date +%s) : 0 ))
done
# the load ends by itself at END; then the last row, with every chunk counted
for p in "${LOAD_PIDS[@]}"; do wait "$p" || true; forget_pid "$p"; done
sample

# ---- summary
read -r HOK HBAD < <(totals http)
read -r UOK UBAD < <(totals udp)
# warnings NODE: its WARN and ERROR log lines since the load started
warnings() { awk -v since="time=$START_TS" '$1 >= since && /level=(WARN|ERROR)/' "$OUT/$1.log"; }
CHUNKS_BAD=$(cat "$OUT"/http.err "$OUT"/udp.err 2>/dev/null | grep -c . || true)
CURVE_OK=1
{
    printf 'soak: %ss at HTTP every %s + UDP every %s through %s, sampled every %ss\n' \
        "$DURATION" "$HTTP_INTERVAL" "$UDP_INTERVAL" "$VIP" "$SAMPLE"
    printf 'binary: %s (%s)\n' "$("$TANDEM" version 2>/dev/null | head -1 || true)" "$SOURCE"
    awk -F, -v half=$(( DURATION / 2 )) -v maxgr="$MAX_GR" -v maxslope="$MAX_RSS_SLOPE" '
    NR == 1 { next }
    {
        n = $3; k = ++cnt[n]
        for (c = 4; c <= 7; c++) v[n, c, k] = $c
        t[n, k] = $2; tr[n] = $8; st[n] = $9; cpu[n, k] = $14
        if ($8 != "" && $8 + 0 > maxtr[n]) maxtr[n] = $8 + 0
    }
    function med3(a, b, c) { return (a <= b) ? ((b <= c) ? b : ((a <= c) ? c : a)) : ((a <= c) ? a : ((b <= c) ? c : b)) }
    END {
        split("rss_kib goroutines heap_kib fds", name, " ")
        printf "%-5s %-11s %10s %10s %10s  %s\n", "NODE", "METRIC", "FIRST", "LAST", "MAX", "SLOPE, 2nd half"
        for (ni = 1; ni <= 2; ni++) {
            n = "lb" ni; N = cnt[n]
            for (c = 4; c <= 7; c++) {
                mx = v[n, c, 1] + 0; sx = sy = sxx = sxy = m = 0
                for (k = 1; k <= N; k++) {
                    if (v[n, c, k] + 0 > mx) mx = v[n, c, k] + 0
                    if (t[n, k] + 0 >= half) {
                        x = t[n, k] / 60; y = v[n, c, k] + 0
                        m++; sx += x; sy += y; sxx += x * x; sxy += x * y
                    }
                }
                slope = (m > 1 && m * sxx - sx * sx > 0) ? (m * sxy - sx * sy) / (m * sxx - sx * sx) : 0
                unit = (c == 4 || c == 6) ? " KiB/min" : " /min"
                printf "%-5s %-11s %10s %10s %10s  %+.2f%s\n", n, name[c - 3], v[n, c, 1], v[n, c, N], mx, slope, unit
                if (c == 4) rss_slope[n] = slope
            }
            # goroutines: the first sample is at load start; the next three are under load
            g0 = (N >= 4) ? med3(v[n, 5, 2], v[n, 5, 3], v[n, 5, 4]) : v[n, 5, 1]
            g1 = (N >= 3) ? med3(v[n, 5, N - 2], v[n, 5, N - 1], v[n, 5, N]) : v[n, 5, N]
            growth[n] = g1 - g0
        }
        for (ni = 1; ni <= 2; ni++) {
            n = "lb" ni; N = cnt[n]
            share[n] = (N > 1 && t[n, N] > t[n, 1]) ? 100 * (cpu[n, N] - cpu[n, 1]) / (t[n, N] - t[n, 1]) : 0
        }
        printf "CPU under load: lb1 %.1f%%, lb2 %.1f%% of a core\n", share["lb1"], share["lb2"]
        bad = 0
        printf "transitions after start-up: lb1 %d, lb2 %d (goal 0); state now: lb1 %s, lb2 %s\n", maxtr["lb1"], maxtr["lb2"], st["lb1"], st["lb2"]
        if (maxtr["lb1"] + maxtr["lb2"] > 0 || st["lb1"] != "MASTER" || st["lb2"] != "BACKUP") bad = 1
        printf "goroutine growth (median of last 3 - median of first 3 under load): lb1 %+d, lb2 %+d (limit %d)\n", growth["lb1"], growth["lb2"], maxgr
        if (growth["lb1"] > maxgr || growth["lb2"] > maxgr) bad = 1
        if (maxslope != "") {
            printf "RSS slope over the second half: lb1 %+.2f, lb2 %+.2f KiB/min (limit %s)\n", rss_slope["lb1"], rss_slope["lb2"], maxslope
            if (rss_slope["lb1"] > maxslope || rss_slope["lb2"] > maxslope) bad = 1
        }
        exit bad
    }' "$OUT/soak.csv" || CURVE_OK=0
    printf 'HTTP requests: %d ok, %d failed; UDP queries: %d ok, %d failed (goal 0 failed)\n' "$HOK" "$HBAD" "$UOK" "$UBAD"
    printf 'node log lines at WARN or ERROR under load: lb1 %d, lb2 %d; probe chunks that exited non-zero: %d\n' \
        "$(warnings lb1 | wc -l)" "$(warnings lb2 | wc -l)" "$CHUNKS_BAD"
    for n in lb1 lb2; do
        warnings "$n" | awk -v n="$n" '
            /adverts late/ { late++; if (match($0, /gap_ms=[0-9]+/)) { g = substr($0, RSTART + 7, RLENGTH - 7) + 0; if (g > max) max = g } }
            /adverts lost/ { lost++ }
            END { if (late + lost) printf "  %s: peer adverts late %d times (largest gap %d ms), lost %d times\n", n, late, max, lost }'
    done
    { warnings lb1; warnings lb2; } | grep -v 'adverts l' | head -n 5 | sed 's/^/  /' || true
} >"$OUT/summary.txt"
cat "$OUT/summary.txt"

rc=0
why=()
(( CURVE_OK )) || why+=("transition, wrong state, or growth over the limit (see above)")
(( HBAD + UBAD == 0 )) || why+=("$((HBAD + UBAD)) failed requests")
(( HOK > 0 && UOK > 0 )) || why+=("no request answered")
(( DEAD == 0 )) || why+=("a node died")
(( CHUNKS_BAD == 0 )) || why+=("$CHUNKS_BAD probe chunks failed (see $OUT/http.err, udp.err)")
nerr=$( { warnings lb1; warnings lb2; } | grep -c 'level=ERROR' || true)
(( nerr == 0 )) || why+=("$nerr ERROR log lines under load")
if (( ${#why[@]} == 0 )); then
    echo "soak: PASS" | tee -a "$OUT/summary.txt"
else
    rc=1
    (IFS=';'; echo "soak: FAIL: ${why[*]}") | tee -a "$OUT/summary.txt"
fi
exit $rc
