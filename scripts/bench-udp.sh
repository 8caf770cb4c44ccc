#!/usr/bin/env bash
# The UDP figure (issue 5): DNS over Tandem's UDP dataplane against a direct
# query, nginx's stream UDP proxy and dnsdist, all in front of the same
# dnsmasq, on the loopback of a network namespace of its own.
#
# Usage: scripts/bench-udp.sh [-o results.json] [--only LIST] [-n NETNS] [--keep]
# Env:   DURATION     seconds per dnsperf run [10]
#        ROUNDS       rounds, interleaved direct, nginx, dnsdist, tandem [3]
#        CLIENTS      dnsperf -c, sockets of the load generator [100]
#        OUTSTANDING  dnsperf -q, queries in flight [100]
#        LAT_RATE     queries/s of the latency prober [5000]
#        LAT_SECONDS  seconds per latency run [5]
#        FLOWS        live flows held through Tandem [100000]
#        PROXY_NICE   nice value of every proxy thread [0]
#        TANDEM_BIN   tandem binary [built from ./cmd/tandem into a temp dir]
#        BENCH_NS     namespace name, as -n [tbudp]
#
# --only: a subset of the workloads qps,latency,flows. Everything runs in
# one namespace this script creates, on its loopback only:
#   direct   dnsmasq 127.0.0.1:5300 (bench.test A 192.0.2.1, no upstream)
#   tandem   VIP 127.0.0.3:53, a protocol: udp cluster, one node alone
#            (MASTER), a dns health check; 127.0.0.3 lives on lo
#   nginx    127.0.0.4:53, stream module, proxy_responses 1, 1 worker
#   dnsdist  127.0.0.5:53, no packet cache, --supervised
# The load generators run on CPU 0, dnsmasq and the proxies on CPU 1
# (taskset): Tandem's GOMAXPROCS is 1. Tandem renices itself to -15 when
# rt_priority is 0; the script sets every proxy thread to PROXY_NICE.
#
# Workloads, per round in the order direct, nginx, dnsdist, tandem (each
# round starting one target further on):
#   qps      dnsperf -c CLIENTS -q OUTSTANDING -l DURATION, one fixed
#            query: answers/s, average latency, lost queries
#   latency  `labtools dnslat` at a fixed LAT_RATE over 20 sockets: p50, p99,
#            p99.9 round trip; the added p99 is the target's minus direct's
#            (dnsperf 2.10 prints no percentiles)
#   flows    Tandem restarted (empty pools), FLOWS clients each send one
#            query and stay live (flow idle timeout 30 s; `labtools
#            dnsflows`): Tandem's VmRSS
#            after minus before, per live flow, KiB, and its Go heap in use
#            (go_memstats_heap_inuse_bytes) per flow. The clients are 100
#            sockets, each sending from FLOWS/100 addresses of 127.1.0.0/16
#            (IP_PKTINFO). Tandem holds each flow's upstream socket: the
#            first 15,000 by descriptor, the rest parked in io_uring (the
#            open-file hard limit is 20,000); its upstream sockets bind to
#            127.0.1.1-3 in turn (source_addresses), a port range each
# Prints a table per metric with ratios of the medians against direct and
# against the faster of nginx and dnsdist, the uptime before and after,
# and writes JSON with -o. Exit 0 when every run produced a figure. Needs
# root and Go; installs dnsperf, dnsmasq, nginx's stream module and dnsdist
# with scripts/deps.sh. Only the processes this script started are
# stopped, by PID; the namespace is deleted on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

NS=${BENCH_NS:-tbudp}
ONLY=qps,latency,flows
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-100}
OUTSTANDING=${OUTSTANDING:-100}
LAT_RATE=${LAT_RATE:-5000}
LAT_SECONDS=${LAT_SECONDS:-5}
FLOWS=${FLOWS:-100000}
PROXY_NICE=${PROXY_NICE:-0}

BENCH=bench-udp
# usage, die, log, num, record, stats, ..., nsx, listening, build_tandem, ...: lib/nsbench.sh
. "$ROOT/scripts/lib/nsbench.sh"
# nginx_bench_head
. "$ROOT/scripts/lib/nginx.sh"
nsbench_args "$@"
num DURATION 1 600
num ROUNDS 1 50
num CLIENTS 1 1000
num OUTSTANDING 1 10000
num LAT_RATE 20 50000
num LAT_SECONDS 1 120
num FLOWS 1 150000 "Tandem's three source addresses hold 55,000 upstream ports each"
[[ $PROXY_NICE =~ ^-?[0-9]+$ ]] || die "PROXY_NICE must be an integer"
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs (load generator on 0, proxies on 1)"

TARGETS=(direct nginx dnsdist tandem)
IFS=, read -r -a WORKLOADS <<<"$ONLY"
for w in "${WORKLOADS[@]}"; do
    case $w in qps|latency|flows) ;; *) die "--only: qps,latency,flows (got '$w')" ;; esac
done

"$ROOT/scripts/deps.sh" dnsperf dnsmasq-base libnginx-mod-stream dnsdist nginx >&2 || die "scripts/deps.sh failed"
for c in ip taskset dnsperf dnsmasq nginx dnsdist go ss curl python3; do
    command -v "$c" >/dev/null || die "$c missing"
done
STREAM_SO=""
for f in /usr/lib/nginx/modules/ngx_stream_module.so /usr/share/nginx/modules/ngx_stream_module.so; do
    [[ -f $f ]] && { STREAM_SO=$f; break; }
done
[[ -n $STREAM_SO ]] || die "ngx_stream_module.so not found (Debian's libnginx-mod-stream)"
nsbench_init bench-udp
bench_started

# ---- builds -------------------------------------------------------------------

build_tandem || exit 1
build_labtools || exit 1

# ---- namespace and servers ------------------------------------------------------

nsbench_netns
nsx sysctl -qw net.ipv4.ip_local_port_range="10000 64999" || true

ANSWER=192.0.2.1
printf 'bench.test A\n' >"$TMP/queries.txt"

ip netns exec "$NS" taskset -c 1 dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
    --no-poll --port=5300 --listen-address=127.0.0.1 --bind-interfaces --user=root \
    --pid-file="$TMP/dnsmasq.pid" --address=/bench.test/$ANSWER --log-facility="$TMP/dnsmasq.log" \
    >"$TMP/dnsmasq.out" 2>&1 &
DNSMASQ_PID=$!
PIDS+=($DNSMASQ_PID)
wait_for 10 listening_udp 127.0.0.1 5300 || { show_log "$TMP/dnsmasq.log"; show_log "$TMP/dnsmasq.out"; die "dnsmasq did not listen"; }

declare -A ADDR=([direct]=127.0.0.1 [tandem]=127.0.0.3 [nginx]=127.0.0.4 [dnsdist]=127.0.0.5)
declare -A PORT=([direct]=5300 [tandem]=53 [nginx]=53 [dnsdist]=53)
declare -A PROXY_PID=()

mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<CONF
load_module $STREAM_SO;
$(nginx_bench_head "$TMP/nginx")
stream {
    server {
        listen 127.0.0.4:53 udp;
        proxy_pass 127.0.0.1:5300;
        proxy_responses 1;
        proxy_timeout 5s;
    }
}
CONF

cat >"$TMP/dnsdist.conf" <<'CONF'
-- no packet cache, no console, no security polling (no traffic off lo)
setSecurityPollSuffix("")
setLocal("127.0.0.5:53")
newServer({address="127.0.0.1:5300", checkName="bench.test.", name="dnsmasq"})
CONF

mkdir -p "$TMP/tconf"
cat >"$TMP/tconf/tandem.yaml" <<CONF
node:
  name: bench-udp
  api_socket: $TMP/tconf/tandem.sock
  log_level: info
  rt_priority: 0
  metrics_listen: 127.0.0.1:9110
cluster:
  bind: 127.0.0.1:7946
  peers: [127.0.0.1:7948]
  insecure: true
  label: bench-udp
failover:
  interface: lo
  vips: [127.0.0.3/32]
  garp:
    count: 0
clusters:
  - name: dns
    vip: 127.0.0.3
    port: 53
    protocol: udp
    health_check: {type: dns, query: bench.test, interval: 1s, timeout: 500ms}
    source_addresses: [127.0.1.1, 127.0.1.2, 127.0.1.3]
    servers:
      - name: dnsmasq
        address: 127.0.0.1:5300
CONF
"$TANDEM" validate --config "$TMP/tconf/tandem.yaml" >"$TMP/tconf/validate.log" 2>&1 ||
    { show_log "$TMP/tconf/validate.log"; die "tandem validate failed"; }

tandem_status() { nsx "$TANDEM" status --socket "$TMP/tconf/tandem.sock" --json 2>/dev/null; }
tandem_ready() {
    local st
    st=$(tandem_status | tr -d ' \n') || return 1
    [[ $st == *'"state":"MASTER"'* && $st == *'"healthy":true'* ]] &&
        ip -n "$NS" -br addr show dev lo | grep -qw "127.0.0.3/32"
}
# tandem_flows: live flows (active_conns) of the dns cluster
tandem_flows() {
    tandem_status | python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(c.get("active_conns",0) for c in s.get("clusters",[])))' 2>/dev/null ||
        echo "?"
}

# tandem_parked: live flows whose upstream socket is parked in io_uring
tandem_parked() {
    tandem_status | python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(c.get("parked_flows",0) for c in s.get("clusters",[])))' 2>/dev/null ||
        echo "?"
}

# tandem_heap: the Go heap in use, bytes (its metrics endpoint)
tandem_heap() {
    nsx curl -s --max-time 2 http://127.0.0.1:9110/metrics 2>/dev/null |
        awk '$1 == "go_memstats_heap_inuse_bytes" { printf "%.0f\n", $2 }'
}

# start_proxy TARGET: starts nginx, dnsdist or tandem (stopping the running
# one first), waits until it answers; 1 with its log shown if not.
start_proxy() {
    local t=$1 pid comm
    stop_proxy "$t"
    case $t in
        nginx)
            ip netns exec "$NS" taskset -c 1 nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
                >>"$TMP/nginx.log" 2>&1 &
            comm=nginx ;;
        dnsdist)
            ip netns exec "$NS" taskset -c 1 dnsdist --supervised --disable-syslog -C "$TMP/dnsdist.conf" \
                >>"$TMP/dnsdist.log" 2>&1 &
            comm=dnsdist ;;
        tandem)
            ip netns exec "$NS" taskset -c 1 "$TANDEM" run --config "$TMP/tconf/tandem.yaml" >>"$TMP/tandem.log" 2>&1 &
            comm=$(basename "$TANDEM" | cut -c1-15) ;;
    esac
    pid=$!
    PIDS+=($pid)
    PROXY_PID[$t]=$pid
    if [[ $t == tandem ]]; then
        wait_for 15 tandem_ready || { show_log "$TMP/tandem.log"; log "tandem: not MASTER with a healthy server within 15 s"; return 1; }
    fi
    wait_for 10 listening_udp "${ADDR[$t]}" "${PORT[$t]}" || { show_log "$TMP/$t.log"; log "$t did not listen"; return 1; }
    is_proc "$pid" "$comm" || { log "PID $pid is not $comm"; return 1; }
    sleep 0.5
    set_nice "$pid"
    # nginx's worker is a child: renice it as well
    if [[ $t == nginx ]]; then
        local c
        for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do set_nice "$c"; done
    fi
    return 0
}

for t in nginx dnsdist tandem; do
    start_proxy "$t" || die "$t did not start"
done

# every target answers the fixed record
for t in "${TARGETS[@]}"; do
    out=$(nsx timeout 10 "$LABTOOLS" dnslat -target "${ADDR[$t]}:${PORT[$t]}" -rate 100 -conns 2 -duration 1s 2>&1) ||
        die "$t: the prober failed: $out"
    ok=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ok"])' "$out")
    [[ $ok -ge 50 ]] || { [[ $t != direct ]] && show_log "$TMP/$t.log"; die "$t: ${ADDR[$t]}:${PORT[$t]}: only $ok answers: $out"; }
done
log "all targets answer: ${TARGETS[*]}"
log_nice

# ---- workloads -------------------------------------------------------------------

bench_results

run_qps() {
    local t=$1 r=$2 out=$TMP/qps.$t.$r.txt qps avg lost sent
    if ! timeout -k 5 $((DURATION + 30)) ip netns exec "$NS" taskset -c 0 dnsperf -s "${ADDR[$t]}" -p "${PORT[$t]}" \
        -d "$TMP/queries.txt" -c "$CLIENTS" -q "$OUTSTANDING" -l "$DURATION" -t 2 >"$out" 2>&1; then
        show_log "$out"; fail "qps $t round $r: dnsperf failed"; return
    fi
    qps=$(awk '/Queries per second:/{printf "%.0f", $4}' "$out")
    avg=$(awk '/Average Latency \(s\):/{printf "%.3f", $4 * 1000}' "$out")
    sent=$(awk '/Queries sent:/{print $3}' "$out")
    lost=$(awk '/Queries lost:/{print $3}' "$out")
    [[ -n $qps && -n $avg ]] || { show_log "$out"; fail "qps $t round $r: no figures in dnsperf's output"; return; }
    record qps "$t" "$qps"
    record avg_ms "$t" "$avg"
    record lost_pct "$t" "$(awk -v l="$lost" -v s="$sent" 'BEGIN { printf "%.3f", (s > 0) ? 100 * l / s : 0 }')"
    log "round $r qps      $t: $qps answers/s, average $avg ms, $lost of $sent lost"
}

run_latency() {
    local t=$1 r=$2 out=$TMP/lat.$t.$r.json p50 p99 p999 lost
    if ! timeout -k 5 $((LAT_SECONDS + 30)) ip netns exec "$NS" taskset -c 0 "$LABTOOLS" dnslat \
        -target "${ADDR[$t]}:${PORT[$t]}" -rate "$LAT_RATE" -conns 20 -duration "${LAT_SECONDS}s" >"$out" 2>&1; then
        show_log "$out"; fail "latency $t round $r: the prober failed"; return
    fi
    read -r p50 p99 p999 lost < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
print("%.1f %.1f %.1f %d" % (d["p50_us"], d["p99_us"], d["p999_us"], d["lost"]))' "$out") ||
        { show_log "$out"; fail "latency $t round $r: no figures"; return; }
    record p50_us "$t" "$p50"
    record p99_us "$t" "$p99"
    record p999_us "$t" "$p999"
    record lat_lost "$t" "$lost"
    log "round $r latency  $t: p50 $p50 µs, p99 $p99 µs, p99.9 $p999 µs at $LAT_RATE q/s, $lost lost"
}

# run_flows: on a freshly started Tandem, so what earlier runs left in its
# pools does not hide the cost of the flows
run_flows() {
    local r=$1 pid out=$TMP/flows.$r.txt before after hold ok bad per live parked fds heap0 heap1 hper=-
    start_proxy tandem || { fail "flows round $r: tandem did not restart"; return; }
    pid=${PROXY_PID[tandem]}
    sleep 1
    before=$(rss_kib "$pid")
    heap0=$(tandem_heap)
    ip netns exec "$NS" taskset -c 0 "$LABTOOLS" dnsflows -target 127.0.0.3:53 -n "$FLOWS" -sockets 100 -max 120s \
        >"$out" 2>"$out.err" &
    hold=$!
    PIDS+=($hold)
    if ! wait_for 25 grep -qs '^ready' "$out"; then
        stop_pid "$hold"; forget_pid "$hold"
        show_log "$out.err"; fail "flows round $r: the flows were not all open within 25 s (the idle timeout is 30 s)"; return
    fi
    read -r _ ok bad <"$out"
    sleep 1
    after=$(rss_kib "$pid")
    heap1=$(tandem_heap)
    live=$(tandem_flows)
    parked=$(tandem_parked)
    fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
    stop_pid "$hold"; forget_pid "$hold"
    if [[ $bad -ne 0 || -z $before || -z $after ]]; then
        show_log "$out.err"; fail "flows round $r: $bad of $FLOWS queries unanswered"; return
    fi
    per=$(awk -v a="$after" -v b="$before" -v n="$ok" 'BEGIN { printf "%.3f", (a - b) / n }')
    record flow_kib "tandem" "$per"
    record flow_rss_before_kib "tandem" "$before"
    record flow_rss_after_kib "tandem" "$after"
    record flow_live "tandem" "$live"
    record flow_parked "tandem" "$parked"
    record flow_fds "tandem" "$fds"
    if [[ -n $heap0 && -n $heap1 ]]; then
        hper=$(awk -v a="$heap1" -v b="$heap0" -v n="$ok" 'BEGIN { printf "%.0f", (a - b) / n }')
        record flow_heap_bytes "tandem" "$hper"
    fi
    log "round $r flows    tandem: RSS $before -> $after KiB for $ok flows ($live live in status, $parked parked in io_uring, $fds descriptors open): $per KiB each; Go heap in use $hper bytes each"
}

for r in $(seq 1 "$ROUNDS"); do
    # each round starts one target further on, so no target is always
    # first (or always right after another's load)
    k=$(( (r - 1) % ${#TARGETS[@]} ))
    ORDER=("${TARGETS[@]:k}" "${TARGETS[@]:0:k}")
    log "=== round $r/$ROUNDS: ${ORDER[*]}"
    for w in "${WORKLOADS[@]}"; do
        if [[ $w == flows ]]; then
            run_flows "$r"
            continue
        fi
        for t in "${ORDER[@]}"; do
            "run_$w" "$t" "$r"
            sleep 1
        done
    done
done
UPTIME_AFTER=$(uptime)

# ---- report ----------------------------------------------------------------------

# best_other METRIC higher|lower: the faster of nginx and dnsdist
best_other() {
    local a b
    a=$(median "$1" nginx); b=$(median "$1" dnsdist)
    awk -v a="$a" -v b="$b" -v d="$2" 'BEGIN {
        if (a == "-") { print b; exit } if (b == "-") { print a; exit }
        if (d == "higher") print (a + 0 > b + 0) ? a : b; else print (a + 0 < b + 0) ? a : b }'
}
added() { # added METRIC TARGET -> target minus direct
    awk -v a="$(median "$1" "$2")" -v d="$(median "$1" direct)" 'BEGIN { if (a == "-" || d == "-") print "-"; else printf "%.1f", a - d }'
}

METRICS=()
for w in "${WORKLOADS[@]}"; do
    case $w in
        qps) METRICS+=(qps avg_ms lost_pct) ;;
        latency) METRICS+=(p50_us p99_us p999_us) ;;
        flows) METRICS+=(flow_kib flow_heap_bytes) ;;
    esac
done
title() {
    case $1 in
        qps) echo "dnsperf -c $CLIENTS -q $OUTSTANDING, ${DURATION}s: answers/s (higher is better)" ;;
        avg_ms) echo "dnsperf: average latency under that load, ms (lower is better)" ;;
        lost_pct) echo "dnsperf: queries lost, % (lower is better)" ;;
        p50_us) echo "prober at $LAT_RATE q/s over 20 sockets: p50 round trip, µs (lower is better)" ;;
        p99_us) echo "prober at $LAT_RATE q/s over 20 sockets: p99 round trip, µs; +direct = added by the proxy" ;;
        p999_us) echo "prober at $LAT_RATE q/s over 20 sockets: p99.9 round trip, µs" ;;
        flow_kib) echo "$FLOWS live flows through Tandem: RSS per flow, KiB (lower is better)" ;;
        flow_heap_bytes) echo "$FLOWS live flows through Tandem: Go heap in use per flow, bytes (go_memstats_heap_inuse_bytes)" ;;
    esac
}
higher() { [[ $1 == qps ]]; }

{
    echo
    echo "bench-udp: $ROUNDS round(s), medians; tandem $TANDEM_SRC; $(nginx -v 2>&1 | sed 's/.*: //'); $(dnsdist --version 2>/dev/null | head -n 1 | awk '{print $1, $2}'); $(dnsperf -h 2>&1 | awk '/^Version/{print "dnsperf", $2}'); dnsmasq $(dnsmasq --version | awk 'NR == 1 {print $3}')"
    uptimes
    for m in "${METRICS[@]}"; do
        echo
        echo "$(title "$m")"
        if [[ $m == flow_* ]]; then
            read -r med min max n < <(stats "$RES/$m.tandem")
            printf '  %-9s %10s %10s %10s %4s   live flows in status: %s\n' target median min max n "$(paste -sd, "$RES/flow_live.tandem" 2>/dev/null)"
            printf '  %-9s %10s %10s %10s %4s\n' tandem "$med" "$min" "$max" "$n"
            continue
        fi
        dir=lower; higher "$m" && dir=higher
        best=$(best_other "$m" "$dir")
        printf '  %-9s %10s %10s %10s %4s %9s %9s %9s\n' target median min max n /direct /best-of +direct
        for t in "${TARGETS[@]}"; do
            read -r med min max n < <(stats "$RES/$m.$t")
            rd=-; rb=-; ad=-
            if [[ $t != direct ]]; then
                rd=$(ratio "$med" "$(median "$m" direct)")
                [[ $m == p*_us || $m == avg_ms ]] && ad=$(added "$m" "$t")
            fi
            [[ $t == tandem ]] && rb=$(ratio "$med" "$best")
            printf '  %-9s %10s %10s %10s %4s %9s %9s %9s\n' "$t" "$med" "$min" "$max" "$n" "$rd" "$rb" "$ad"
        done
    done
    echo
    echo "/best-of: tandem against the faster of nginx and dnsdist; +direct: minus direct's median"
    true
} | tee "$TMP/report.txt"

results_file() {
    local sep="" m dir rd rb ad
    printf '{"rounds":%d,"duration_s":%d,"clients":%d,"outstanding":%d,"lat_rate":%d,"lat_seconds":%d,"flows":%d,"proxy_nice":%d,' \
        "$ROUNDS" "$DURATION" "$CLIENTS" "$OUTSTANDING" "$LAT_RATE" "$LAT_SECONDS" "$FLOWS" "$PROXY_NICE"
    printf '"tandem":%s,"nginx":%s,"dnsdist":%s,' "$(json_str "$TANDEM_SRC")" \
        "$(json_str "$(nginx -v 2>&1)")" "$(json_str "$(dnsdist --version 2>/dev/null | head -n 1)")"
    uptimes_results_json "${METRICS[@]}" lat_lost flow_rss_before_kib flow_rss_after_kib flow_live flow_parked flow_fds
    printf ',"ratios":{'
    for m in "${METRICS[@]}"; do
        [[ $m == flow_* ]] && continue
        dir=lower; higher "$m" && dir=higher
        rd=$(ratio "$(median "$m" tandem)" "$(median "$m" direct)")
        rb=$(ratio "$(median "$m" tandem)" "$(best_other "$m" "$dir")")
        [[ $rd == - ]] && rd=null
        [[ $rb == - ]] && rb=null
        printf '%s"%s.tandem":{"vs_direct":%s,"vs_best_of_nginx_dnsdist":%s' "$sep" "$m" "$rd" "$rb"
        if [[ $m == p*_us ]]; then
            ad=$(added "$m" tandem); [[ $ad == - ]] && ad=null
            printf ',"added_us":%s' "$ad"
        fi
        printf '}'
        sep=","
    done
    printf '},"ok":%s}\n' "$(json_ok)"
}
write_json results_file
exit $FAILED
