#!/usr/bin/env bash
# The proxy figure: Tandem's TCP dataplane against HAProxy (Debian's, mode
# tcp, nbthread 1) and a direct connection, on the loopback of a network
# namespace of its own.
#
# Usage: scripts/bench-proxy.sh [-o results.json] [--engines epoll,go]
#                               [--only LIST] [-n NETNS] [--keep]
# Env:   DURATION     seconds per load run [10]
#        ROUNDS       rounds, interleaved direct, haproxy, tandem-... [3]
#        IDLE_CONNS   idle connections held through each proxy [3000]
#        PROXY_NICE   nice value of both proxies [0]
#        TANDEM_BIN   tandem binary [built from ./cmd/tandem into a temp dir]
#        BENCH_NS     namespace name, as -n [tbproxy]
#
# --engines: the Tandem variants, epoll (the default engine on Linux) and/or
# go (TANDEM_ENGINE=go). --only: a subset of the workloads short,keepalive,
# bulk,idle. Everything runs in one namespace this script creates, on its
# loopback only:
#   direct        nginx 127.0.0.1:8080 (100-byte body), iperf3 -s 127.0.0.1:5201
#   haproxy       127.0.0.2:80, :5201, :9000 (mode tcp, nbthread 1)
#   tandem-epoll  VIP 127.0.0.3, ports 80, 5201, 9000 (one node, alone: MASTER)
#   tandem-go     VIP 127.0.0.4, the same, TANDEM_ENGINE=go
#   idle sink     127.0.0.1:9001 (labtools echo -raw: echoes, holds connections)
# Load generators run on CPU 0, proxies and servers on CPU 1 (taskset), so
# Tandem's GOMAXPROCS is 1, like HAProxy's nbthread. Tandem renices itself to
# -15 when rt_priority is 0; the script sets every thread of both proxies to
# PROXY_NICE so they compete with nginx and iperf3 on equal terms.
#
# Workloads, each DURATION seconds, per round in the order direct, haproxy,
# tandem-*, medians over ROUNDS:
#   short      wrk -t1 -c50 -H 'Connection: close'           req/s
#   keepalive  wrk -t1 -c100 --latency                       req/s, p99 ms
#   bulk       iperf3 -P 1 and -P 4, receiver sum            Gbit/s
#   idle       IDLE_CONNS connections, each echoes one byte, then held
#              (labtools hold):
#              the proxy's VmRSS after minus before, per connection, KiB;
#              the proxy is restarted first, so its pools start empty
# Prints a table per workload with tandem/haproxy and tandem/direct ratios
# of the medians, the machine's uptime (load) before and after, and writes
# JSON with -o. Exit 0 when every run produced a figure. Needs root and Go;
# installs haproxy, wrk, iperf3 and nginx with scripts/deps.sh. Only the
# processes this script started are stopped, by PID; the namespace is
# deleted on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

NS=${BENCH_NS:-tbproxy}
ENGINES=epoll,go
ONLY=short,keepalive,bulk,idle
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
IDLE_CONNS=${IDLE_CONNS:-3000}
PROXY_NICE=${PROXY_NICE:-0}

BENCH=bench-proxy
# usage, die, log, num, record, stats, ..., nsx, listening, build_tandem, ...: lib/nsbench.sh
. "$ROOT/scripts/lib/nsbench.sh"
# nginx_bench_head
. "$ROOT/scripts/lib/nginx.sh"
# extra_opt: --engines LIST, as bench_opt takes its options
extra_opt() {
    case $1 in
        --engines) [[ $# -ge 2 ]] || usage; ENGINES=$2; SHIFT=2 ;;
        --engines=*) ENGINES=${1#--engines=}; SHIFT=1 ;;
        *) return 1 ;;
    esac
}
nsbench_args "$@"
num DURATION 1 600
num ROUNDS 1 50
num IDLE_CONNS 1 5000 "the open-file limit is 20,000 per process"
[[ $PROXY_NICE =~ ^-?[0-9]+$ ]] || die "PROXY_NICE must be an integer"
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs (load generator on 0, proxies on 1)"

TARGETS=(direct haproxy)
IFS=, read -r -a _engines <<<"$ENGINES"
for e in "${_engines[@]}"; do
    case $e in
        epoll|go) TARGETS+=("tandem-$e") ;;
        *) die "--engines: epoll and/or go (got '$e')" ;;
    esac
done
# sticky: tandem-epoll's cluster on port 81, the same pool with persistence
# (source_ip): short connections only, to compare with persistence off.
[[ " ${TARGETS[*]} " == *" tandem-epoll "* ]] && TARGETS+=(sticky)
IFS=, read -r -a WORKLOADS <<<"$ONLY"
for w in "${WORKLOADS[@]}"; do
    case $w in short|keepalive|bulk|idle) ;; *) die "--only: short,keepalive,bulk,idle (got '$w')" ;; esac
done

"$ROOT/scripts/deps.sh" haproxy wrk iperf3 nginx >&2 || die "scripts/deps.sh failed"
for c in ip taskset haproxy wrk iperf3 nginx go ss; do
    command -v "$c" >/dev/null || die "$c missing"
done
nsbench_init bench-proxy
bench_started

# ---- builds -------------------------------------------------------------------

build_tandem || exit 1
build_labtools || exit 1

# ---- namespace and servers ------------------------------------------------------

nsbench_netns
# per-namespace: room for the short-connection runs' ephemeral ports
nsx sysctl -qw net.ipv4.ip_local_port_range="10000 64999" || true
nsx sysctl -qw net.ipv4.tcp_tw_reuse=1 || true
nsx sysctl -qw net.core.somaxconn=8192 || true

BODY=$(printf '%0100d' 0 | tr 0 x) # 100 bytes
mkdir -p "$TMP/nginx/tmp"
cat >"$TMP/nginx/nginx.conf" <<CONF
$(nginx_bench_head "$TMP/nginx")
http {
    access_log off;
    client_body_temp_path $TMP/nginx/tmp/body;
    proxy_temp_path $TMP/nginx/tmp/proxy;
    fastcgi_temp_path $TMP/nginx/tmp/fastcgi;
    uwsgi_temp_path $TMP/nginx/tmp/uwsgi;
    scgi_temp_path $TMP/nginx/tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    server {
        listen 127.0.0.1:8080 backlog=8192;
        location / {
            default_type text/plain;
            return 200 "$BODY";
        }
    }
}
CONF
ip netns exec "$NS" taskset -c 1 nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
    >"$TMP/nginx.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS" taskset -c 1 iperf3 -s -B 127.0.0.1 -p 5201 >"$TMP/iperf3-server.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS" taskset -c 1 "$LABTOOLS" echo -raw -listen 127.0.0.1:9001 -idle 10m -max-conns 20000 \
    >"$TMP/sink.log" 2>&1 &
PIDS+=($!)
wait_for 10 listening 127.0.0.1 8080 || { show_log "$TMP/nginx/error.log"; show_log "$TMP/nginx.log"; die "nginx did not listen"; }
wait_for 10 listening 127.0.0.1 5201 || { show_log "$TMP/iperf3-server.log"; die "iperf3 -s did not listen"; }
wait_for 10 listening 127.0.0.1 9001 || { show_log "$TMP/sink.log"; die "the idle sink did not listen"; }

# ---- proxies ---------------------------------------------------------------------

declare -A ADDR=([direct]=127.0.0.1 [haproxy]=127.0.0.2 [tandem-epoll]=127.0.0.3 [tandem-go]=127.0.0.4 [sticky]=127.0.0.3)
declare -A HTTP_PORT=([direct]=8080 [haproxy]=80 [tandem-epoll]=80 [tandem-go]=80 [sticky]=81)
declare -A IDLE_PORT=([direct]=9001 [haproxy]=9000 [tandem-epoll]=9000 [tandem-go]=9000)
declare -A PROXY_PID=()

cat >"$TMP/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 8000
defaults
    mode tcp
    maxconn 8000
    timeout connect 1m
    timeout client 1m
    timeout server 1m
frontend web
    bind 127.0.0.2:80
    default_backend web
backend web
    server nginx 127.0.0.1:8080
frontend bulk
    bind 127.0.0.2:5201
    default_backend bulk
backend bulk
    server iperf3 127.0.0.1:5201
frontend idle
    bind 127.0.0.2:9000
    default_backend idle
backend idle
    server sink 127.0.0.1:9001
CONF
haproxy -c -f "$TMP/haproxy.cfg" >"$TMP/haproxy-check.log" 2>&1 || { show_log "$TMP/haproxy-check.log"; die "haproxy config check failed"; }

tandem_master() { # tandem_master DIR VIP
    nsx "$TANDEM" status --socket "$1/tandem.sock" --json 2>/dev/null | tr -d ' \n' | grep -q '"state":"MASTER"' &&
        ip -n "$NS" -br addr show dev lo | grep -qw "$2/32"
}

# start_proxy TARGET: starts haproxy or tandem-ENGINE (stopping the running
# one first) and waits until it serves; 1 with its log shown if not.
start_proxy() {
    local t=$1 pid
    stop_proxy "$t"
    if [[ $t == haproxy ]]; then
        ip netns exec "$NS" nice -n "$PROXY_NICE" taskset -c 1 haproxy -db -f "$TMP/haproxy.cfg" >>"$TMP/haproxy.log" 2>&1 &
        pid=$!
        PIDS+=($pid)
        PROXY_PID[$t]=$pid
        wait_for 10 listening 127.0.0.2 9000 || { show_log "$TMP/haproxy.log"; log "haproxy did not listen"; return 1; }
        is_proc "$pid" haproxy || { log "PID $pid is not haproxy"; return 1; }
        return 0
    fi
    local eng=${t#tandem-} dir=$TMP/$t vip=${ADDR[$t]}
    ip netns exec "$NS" env TANDEM_ENGINE="$eng" taskset -c 1 "$TANDEM" run --config "$dir/tandem.yaml" >"$TMP/$t.log" 2>&1 &
    pid=$!
    PIDS+=($pid)
    PROXY_PID[$t]=$pid
    if ! wait_for 15 tandem_master "$dir" "$vip"; then
        show_log "$TMP/$t.log"; log "$t: not MASTER with $vip on lo within 15 s"; return 1
    fi
    wait_for 5 listening "$vip" 9000 || { show_log "$TMP/$t.log"; log "$t: no listener on $vip:9000"; return 1; }
    grep -q "engine=$eng\|\"engine\":\"$eng\"" "$TMP/$t.log" ||
        { show_log "$TMP/$t.log"; log "$t: the log does not say engine $eng"; return 1; }
    is_proc "$pid" "$(basename "$TANDEM" | cut -c1-15)" || { log "PID $pid is not tandem"; return 1; }
    set_nice "$pid"
}
start_proxy haproxy || die "haproxy did not start"

i=0
for t in "${TARGETS[@]}"; do
    [[ $t == tandem-* ]] || continue
    eng=${t#tandem-}
    dir=$TMP/$t
    vip=${ADDR[$t]}
    mkdir -p "$dir"
    cat >"$dir/tandem.yaml" <<CONF
node:
  name: bench-$eng
  api_socket: $dir/tandem.sock
  log_level: info
  rt_priority: 0
cluster:
  bind: 127.0.0.1:$((7946 + 2 * i))
  peers: [127.0.0.1:$((7947 + 2 * i))]
  insecure: true
  label: bench-$eng
failover:
  interface: lo
  vips: [$vip/32]
  garp:
    count: 0
clusters:
  - name: web
    vip: $vip
    port: 80
    servers:
      - name: nginx
        address: 127.0.0.1:8080
  - name: sticky
    vip: $vip
    port: 81
    persistence: {mode: source_ip, mask: 32, timeout: 10m}
    servers:
      - name: nginx
        address: 127.0.0.1:8080
  - name: bulk
    vip: $vip
    port: 5201
    servers:
      - name: iperf3
        address: 127.0.0.1:5201
  - name: idle
    vip: $vip
    port: 9000
    servers:
      - name: sink
        address: 127.0.0.1:9001
CONF
    i=$((i + 1))
    if ! "$TANDEM" validate --config "$dir/tandem.yaml" >"$dir/validate.log" 2>&1; then
        show_log "$dir/validate.log"; die "$t: tandem validate failed"
    fi
    start_proxy "$t" || die "$t did not start"
done

# every target answers the 100-byte body and has its listeners
for t in "${TARGETS[@]}"; do
    [[ $t == sticky ]] && continue
    got=$(nsx bash -c "exec 3<>/dev/tcp/${ADDR[$t]}/${HTTP_PORT[$t]} && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && timeout 5 cat <&3" 2>/dev/null | tail -n 1 || true)
    [[ $got == "$BODY" ]] || { [[ -n ${PROXY_PID[$t]:-} ]] && show_log "$TMP/$t.log"; die "$t: ${ADDR[$t]}:${HTTP_PORT[$t]} did not answer the body"; }
    if [[ $t != direct ]]; then
        listening "${ADDR[$t]}" 5201 && listening "${ADDR[$t]}" 9000 || die "$t: no listener on :5201 or :9000"
    fi
done
log "all targets answer: ${TARGETS[*]}"
log_nice

# ---- workloads -------------------------------------------------------------------

bench_results

# wrk_run OUTFILE ARGS...: bounded in time
wrk_run() {
    local out=$1; shift
    timeout -k 5 $((DURATION + 30)) ip netns exec "$NS" taskset -c 0 wrk "$@" >"$out" 2>&1
}

# lat_ms "1.23ms" -> 1.23
lat_ms() {
    awk -v v="$1" 'BEGIN {
        n = v; sub(/[a-z]+$/, "", n); u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
        if (f < 0 || n == "") exit 1
        printf "%.3f\n", n * f
    }'
}

wrk_errors() { # total socket errors and non-2xx responses of a wrk output
    awk '/Socket errors:/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) { s += $i } }
         /Non-2xx or 3xx responses:/ { s += $NF }
         END { print s + 0 }' "$1"
}

run_short() {
    local t=$1 r=$2 out=$TMP/short.$t.$r.txt rps
    wrk_run "$out" -t1 -c50 -d"${DURATION}s" -H 'Connection: close' "http://${ADDR[$t]}:${HTTP_PORT[$t]}/" ||
        { show_log "$out"; fail "short $t round $r: wrk failed"; return; }
    rps=$(awk '/^Requests\/sec:/{print $2}' "$out")
    [[ -n $rps ]] || { show_log "$out"; fail "short $t round $r: no Requests/sec"; return; }
    record short_rps "$t" "$rps"
    record short_errors "$t" "$(wrk_errors "$out")"
    log "round $r short      $t: $rps req/s ($(wrk_errors "$out") errors)"
}

run_keepalive() {
    local t=$1 r=$2 out=$TMP/keepalive.$t.$r.txt rps p99
    wrk_run "$out" -t1 -c100 -d"${DURATION}s" --latency "http://${ADDR[$t]}:${HTTP_PORT[$t]}/" ||
        { show_log "$out"; fail "keepalive $t round $r: wrk failed"; return; }
    rps=$(awk '/^Requests\/sec:/{print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    p99=$(lat_ms "$p99" 2>/dev/null || true)
    [[ -n $rps && -n $p99 ]] || { show_log "$out"; fail "keepalive $t round $r: no Requests/sec or p99"; return; }
    record keepalive_rps "$t" "$rps"
    record keepalive_p99_ms "$t" "$p99"
    record keepalive_errors "$t" "$(wrk_errors "$out")"
    log "round $r keepalive  $t: $rps req/s, p99 $p99 ms ($(wrk_errors "$out") errors)"
}

run_bulk() {
    local t=$1 r=$2 p out gbps
    for p in 1 4; do
        out=$TMP/bulk$p.$t.$r.txt
        if ! timeout -k 5 $((DURATION + 30)) ip netns exec "$NS" taskset -c 0 \
            iperf3 -c "${ADDR[$t]}" -p 5201 -t "$DURATION" -P "$p" -f g --connect-timeout 5000 >"$out" 2>&1; then
            show_log "$out"; fail "bulk -P $p $t round $r: iperf3 failed"; continue
        fi
        # the receiver's line: the [SUM] one with several streams
        gbps=$(awk '/receiver/ { for (i = 2; i <= NF; i++) if ($i == "Gbits/sec") v = $(i - 1) }
                    /receiver/ && /SUM/ { s = v } END { print (s != "") ? s : v }' "$out")
        [[ -n $gbps ]] || { show_log "$out"; fail "bulk -P $p $t round $r: no receiver figure"; continue; }
        record "bulk${p}_gbps" "$t" "$gbps"
        log "round $r bulk -P $p  $t: $gbps Gbit/s"
        sleep 0.5 # the iperf3 server takes the next test
    done
}

# run_idle: on a freshly started proxy, so what earlier runs left in its
# memory pools does not hide the cost of the connections (HAProxy's RSS
# grew by only 0.06 KiB per connection the second time round)
run_idle() {
    local t=$1 r=$2 pid out=$TMP/idle.$t.$r.txt before after hold ok bad per
    start_proxy "$t" || { fail "idle $t round $r: the proxy did not restart"; return; }
    pid=${PROXY_PID[$t]}
    sleep 1
    before=$(rss_kib "$pid")
    ip netns exec "$NS" taskset -c 0 "$LABTOOLS" hold -target "${ADDR[$t]}:${IDLE_PORT[$t]}" \
        -n "$IDLE_CONNS" -timeout 10s -max 120s >"$out" 2>"$out.err" &
    hold=$!
    PIDS+=($hold)
    if ! wait_for 60 grep -qs '^ready' "$out"; then
        stop_pid "$hold"; forget_pid "$hold"
        show_log "$out.err"; fail "idle $t round $r: the connections were not all open within 60 s"; return
    fi
    read -r _ ok bad <"$out"
    sleep 1
    after=$(rss_kib "$pid")
    stop_pid "$hold"; forget_pid "$hold"
    if [[ $bad -ne 0 || -z $before || -z $after ]]; then
        show_log "$out.err"; fail "idle $t round $r: $bad of $IDLE_CONNS connections failed"; return
    fi
    per=$(awk -v a="$after" -v b="$before" -v n="$ok" 'BEGIN { printf "%.2f", (a - b) / n }')
    record idle_kib_per_conn "$t" "$per"
    record idle_rss_before_kib "$t" "$before"
    record idle_rss_after_kib "$t" "$after"
    log "round $r idle       $t: RSS $before -> $after KiB for $ok connections: $per KiB each"
    sleep 2 # let the proxy close its side
}

for r in $(seq 1 "$ROUNDS"); do
    log "=== round $r/$ROUNDS (${DURATION}s per run)"
    for w in "${WORKLOADS[@]}"; do
        for t in "${TARGETS[@]}"; do
            [[ $w == idle && $t == direct ]] && continue
            [[ $t == sticky && $w != short ]] && continue
            "run_$w" "$t" "$r"
        done
    done
done
UPTIME_AFTER=$(uptime)

# ---- report ----------------------------------------------------------------------

METRICS=()
for w in "${WORKLOADS[@]}"; do
    case $w in
        short) METRICS+=(short_rps) ;;
        keepalive) METRICS+=(keepalive_rps keepalive_p99_ms) ;;
        bulk) METRICS+=(bulk1_gbps bulk4_gbps) ;;
        idle) METRICS+=(idle_kib_per_conn) ;;
    esac
done
title() {
    case $1 in
        short_rps) echo "short connections: wrk -t1 -c50 -H 'Connection: close', 100-byte body; req/s (higher is better)" ;;
        keepalive_rps) echo "keep-alive: wrk -t1 -c100; req/s (higher is better)" ;;
        keepalive_p99_ms) echo "keep-alive: wrk -t1 -c100 --latency; p99 latency, ms (lower is better)" ;;
        bulk1_gbps) echo "bulk: iperf3 -P 1, receiver; Gbit/s (higher is better)" ;;
        bulk4_gbps) echo "bulk: iperf3 -P 4, receiver sum; Gbit/s (higher is better)" ;;
        idle_kib_per_conn) echo "idle: $IDLE_CONNS proxied connections held; proxy RSS KiB per connection (lower is better)" ;;
    esac
}

{
    echo
    echo "bench-proxy: $ROUNDS round(s) x ${DURATION}s, medians; tandem $TANDEM_SRC; $(haproxy -v 2>/dev/null | head -n 1 | awk '{print "HAProxy", $3}')"
    uptimes
    for m in "${METRICS[@]}"; do
        echo
        echo "$(title "$m")"
        printf '  %-13s %10s %10s %10s %4s %9s %9s\n' target median min max n /haproxy /direct
        for t in "${TARGETS[@]}"; do
            [[ $m == idle_* && $t == direct ]] && continue
            [[ $t == sticky && $m != short_rps ]] && continue
            read -r med min max n < <(stats "$RES/$m.$t")
            rh=-; rd=-
            if [[ $t != direct && $t != haproxy ]]; then
                rh=$(ratio "$med" "$(median "$m" haproxy)")
                [[ $m != idle_* ]] && rd=$(ratio "$med" "$(median "$m" direct)")
            elif [[ $t == haproxy && $m != idle_* ]]; then
                rd=$(ratio "$med" "$(median "$m" direct)")
            fi
            printf '  %-13s %10s %10s %10s %4s %9s %9s\n' "$t" "$med" "$min" "$max" "$n" "$rh" "$rd"
        done
    done
    for m in short_errors keepalive_errors; do
        for t in "${TARGETS[@]}"; do
            [[ -s $RES/$m.$t ]] || continue
            s=$(awk '{ s += $1 } END { print s + 0 }' "$RES/$m.$t")
            [[ $s -gt 0 ]] && echo "note: ${m%_errors}: $t: $s wrk socket errors or non-2xx responses over all rounds"
        done
    done
    if [[ -s $RES/short_rps.sticky && -s $RES/short_rps.tandem-epoll ]]; then
        echo
        echo "persistence: short req/s with persistence on / off (sticky / tandem-epoll): $(ratio "$(median short_rps sticky)" "$(median short_rps tandem-epoll)") (goal >= 0.9)"
    fi
    true
} | tee "$TMP/report.txt"

results_file() {
    local sep="" m t rh rd
    printf '{"rounds":%d,"duration_s":%d,"idle_conns":%d,"proxy_nice":%d,' "$ROUNDS" "$DURATION" "$IDLE_CONNS" "$PROXY_NICE"
    printf '"tandem":%s,"haproxy":%s,' "$(json_str "$TANDEM_SRC")" "$(json_str "$(haproxy -v 2>/dev/null | head -n 1)")"
    uptimes_results_json "${METRICS[@]}" short_errors keepalive_errors idle_rss_before_kib idle_rss_after_kib
    printf ',"ratios":{'
    for m in "${METRICS[@]}"; do
        for t in "${TARGETS[@]}"; do
            [[ $t == tandem-* ]] || continue
            rh=$(ratio "$(median "$m" "$t")" "$(median "$m" haproxy)")
            rd=-
            [[ $m != idle_* ]] && rd=$(ratio "$(median "$m" "$t")" "$(median "$m" direct)")
            [[ $rh == - ]] && rh=null
            [[ $rd == - ]] && rd=null
            printf '%s"%s.%s":{"vs_haproxy":%s,"vs_direct":%s}' "$sep" "$m" "$t" "$rh" "$rd"
            sep=","
        done
    done
    printf '},"ok":%s}\n' "$(json_ok)"
}
write_json results_file
exit $FAILED
