#!/usr/bin/env bash
# The HTTP figure: Tandem's protocol: http clusters against HAProxy
# (Debian's, mode http, nbthread 1) and nginx direct, on the loopback of a
# network namespace of its own.
#
# Usage: scripts/bench-http.sh [-o results.json] [--only LIST] [-n NETNS] [--keep]
# Env:   DURATION     seconds per load run [10]
#        ROUNDS       rounds, interleaved direct, haproxy, tandem [3]
#        CONNS        client connections of the keep-alive and h2 runs [100]
#        IDLE_CONNS   idle keep-alive connections held through each proxy [2000]
#        PROXY_NICE   nice value of both proxies [0]
#        TANDEM_BIN   tandem binary [built from ./cmd/tandem into a temp dir]
#        BENCH_NS     namespace name, as -n [tbhttp]
#
# --only: a subset of the workloads keepalive,h2,tlsnew,idle. Everything runs in
# one namespace this script creates, on its loopback only:
#   direct   nginx 127.0.0.1:8080 (100-byte body, plain HTTP only)
#   haproxy  127.0.0.2:80 (http) and :443 (TLS, ALPN h2,http/1.1), mode http,
#            nbthread 1, option forwardfor, http-reuse always
#   tandem   VIP 127.0.0.3:80 and :443, protocol: http (one node, alone: MASTER)
# Both proxies terminate TLS with the same ECDSA P-256 certificate and send
# X-Forwarded-For. Load generators run on CPU 0, proxies and nginx on CPU 1
# (taskset), so Tandem's GOMAXPROCS is 1, like HAProxy's nbthread.
#
# Workloads, each DURATION seconds, medians over ROUNDS:
#   keepalive  wrk -t1 -cCONNS --latency, HTTP/1.1 keep-alive   req/s, p99 ms
#   h2         h2load -cCONNS/10 -m10 over TLS (HTTP/2)         req/s
#   tlsnew     wrk -t1 -c50 -H 'Connection: close' over TLS 1.3: a new
#              TLS connection per request                      conn/s
#   idle       IDLE_CONNS connections, each one GET then held idle
#              (labtools hold -http [-tls]), plain and TLS: the proxy's
#              VmRSS after minus before, per connection, KiB; the proxy
#              is restarted first, so its pools start empty
# Prints a table per workload with tandem/haproxy (and /direct) ratios of
# the medians, and writes JSON with -o. Exit 0 when every run produced a
# figure. Needs root and Go; installs haproxy, wrk, nginx and h2load
# (nghttp2-client) with scripts/deps.sh. Only the processes this script
# started are stopped, by PID; the namespace is deleted on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

NS=${BENCH_NS:-tbhttp}
ONLY=keepalive,h2,tlsnew,idle
IDLE_CONNS=${IDLE_CONNS:-2000}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-100}
PROXY_NICE=${PROXY_NICE:-0}

BENCH=bench-http
. "$ROOT/scripts/lib/nsbench.sh"
. "$ROOT/scripts/lib/nginx.sh"
nsbench_args "$@"
num DURATION 1 600
num ROUNDS 1 50
num CONNS 10 5000
num IDLE_CONNS 1 5000 "the open-file limit is 20,000 per process"
[[ $PROXY_NICE =~ ^-?[0-9]+$ ]] || die "PROXY_NICE must be an integer"
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs (load generator on 0, proxies on 1)"
IFS=, read -r -a WORKLOADS <<<"$ONLY"
for w in "${WORKLOADS[@]}"; do
    case $w in keepalive|h2|tlsnew|idle) ;; *) die "--only: keepalive,h2,tlsnew,idle (got '$w')" ;; esac
done

"$ROOT/scripts/deps.sh" haproxy wrk nginx nghttp2-client >&2 || die "scripts/deps.sh failed"
for c in ip taskset haproxy wrk nginx h2load openssl go ss; do
    command -v "$c" >/dev/null || die "$c missing"
done
nsbench_init bench-http
bench_started
build_tandem || exit 1
build_labtools || exit 1

nsbench_netns
nsx sysctl -qw net.ipv4.ip_local_port_range="10000 64999" || true
nsx sysctl -qw net.ipv4.tcp_tw_reuse=1 || true
nsx sysctl -qw net.core.somaxconn=8192 || true

# ---- certificate, nginx ---------------------------------------------------------

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.test \
    -addext subjectAltName=DNS:bench.test -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >"$TMP/openssl.log" 2>&1 ||
    { show_log "$TMP/openssl.log"; die "openssl could not make the certificate"; }
cat "$TMP/cert.pem" "$TMP/key.pem" >"$TMP/haproxy.pem"

BODY=$(printf '%0100d' 0 | tr 0 x)
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
        location / { default_type text/plain; return 200 "$BODY"; }
    }
}
CONF
ip netns exec "$NS" taskset -c 1 nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
    >"$TMP/nginx.log" 2>&1 &
PIDS+=($!)
wait_for 10 listening 127.0.0.1 8080 || { show_log "$TMP/nginx/error.log"; die "nginx did not listen"; }

# ---- proxies ---------------------------------------------------------------------

TARGETS=(direct haproxy tandem)
declare -A ADDR=([direct]=127.0.0.1 [haproxy]=127.0.0.2 [tandem]=127.0.0.3)
declare -A PORT=([direct]=8080 [haproxy]=80 [tandem]=80)
declare -A PROXY_PID=()

cat >"$TMP/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 8000
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    maxconn 8000
    option forwardfor
    http-reuse always
    timeout connect 3s
    timeout client 1m
    timeout server 1m
    timeout http-request 10s
    timeout http-keep-alive 1m
frontend web
    bind 127.0.0.2:80
    bind 127.0.0.2:443 ssl crt $TMP/haproxy.pem alpn h2,http/1.1
    default_backend web
backend web
    server nginx 127.0.0.1:8080
CONF
haproxy -c -f "$TMP/haproxy.cfg" >"$TMP/haproxy-check.log" 2>&1 || { show_log "$TMP/haproxy-check.log"; die "haproxy config check failed"; }

mkdir -p "$TMP/node"
cat >"$TMP/node/tandem.yaml" <<CONF
node:
  name: bench-http
  api_socket: $TMP/node/tandem.sock
  log_level: info
  rt_priority: 0
cluster:
  bind: 127.0.0.1:7946
  peers: [127.0.0.1:7947]
  insecure: true
  label: bench-http
failover:
  interface: lo
  vips: [127.0.0.3/32]
  garp:
    count: 0
clusters:
  - name: web
    vip: 127.0.0.3
    port: 80
    protocol: http
    servers:
      - {name: nginx, address: "127.0.0.1:8080"}
  - name: web-tls
    vip: 127.0.0.3
    port: 443
    protocol: http
    tls: {cert_file: $TMP/cert.pem, key_file: $TMP/key.pem}
    servers:
      - {name: nginx, address: "127.0.0.1:8080"}
CONF
"$TANDEM" validate --config "$TMP/node/tandem.yaml" >"$TMP/validate.log" 2>&1 || { show_log "$TMP/validate.log"; die "tandem validate failed"; }

tandem_master() {
    nsx "$TANDEM" status --socket "$TMP/node/tandem.sock" --json 2>/dev/null | tr -d ' \n' | grep -q '"state":"MASTER"' &&
        ip -n "$NS" -br addr show dev lo | grep -qw "127.0.0.3/32"
}

# start_proxy haproxy|tandem: (re)starts it and waits until it serves.
start_proxy() {
    local pid
    stop_proxy "$1"
    if [[ $1 == haproxy ]]; then
        ip netns exec "$NS" nice -n "$PROXY_NICE" taskset -c 1 haproxy -db -f "$TMP/haproxy.cfg" >>"$TMP/haproxy.log" 2>&1 &
        pid=$!
        PIDS+=($pid)
        PROXY_PID[haproxy]=$pid
        wait_for 10 listening 127.0.0.2 443 || { show_log "$TMP/haproxy.log"; log "haproxy did not listen"; return 1; }
        return 0
    fi
    ip netns exec "$NS" taskset -c 1 "$TANDEM" run --config "$TMP/node/tandem.yaml" >>"$TMP/tandem.log" 2>&1 &
    pid=$!
    PIDS+=($pid)
    PROXY_PID[tandem]=$pid
    wait_for 15 tandem_master || { show_log "$TMP/tandem.log"; log "tandem: not MASTER with 127.0.0.3 on lo within 15 s"; return 1; }
    wait_for 5 listening 127.0.0.3 443 || { show_log "$TMP/tandem.log"; log "tandem: no listener on 127.0.0.3:443"; return 1; }
    set_nice "$pid"
}
start_proxy haproxy || die "haproxy did not start"
start_proxy tandem || die "tandem did not start"
log_nice

for t in direct haproxy tandem; do
    got=$(nsx curl -s -m 5 "http://${ADDR[$t]}:${PORT[$t]}/" || true)
    [[ $got == "$BODY" ]] || die "$t: http://${ADDR[$t]}:${PORT[$t]}/ did not answer the body"
    [[ $t == direct ]] && continue
    got=$(nsx curl -s -m 5 --http2 --cacert "$TMP/cert.pem" --resolve "bench.test:443:${ADDR[$t]}" \
        -w ' %{http_version}' https://bench.test/ || true)
    [[ $got == "$BODY 2" ]] || die "$t: https with HTTP/2 answered '$got'"
done
log "all targets answer"

# ---- workloads -------------------------------------------------------------------

bench_results
load() { # load OUTFILE CMD...: on CPU 0, bounded in time
    local out=$1; shift
    timeout -k 5 $((DURATION + 30)) ip netns exec "$NS" taskset -c 0 "$@" >"$out" 2>&1
}
lat_ms() {
    awk -v v="$1" 'BEGIN { n = v; sub(/[a-z]+$/, "", n); u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : -1
        if (f < 0 || n == "") exit 1; printf "%.3f\n", n * f }'
}
wrk_errors() {
    awk '/Socket errors:/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i }
         /Non-2xx or 3xx responses:/ { s += $NF } END { print s + 0 }' "$1"
}

run_keepalive() {
    local t=$1 r=$2 out=$TMP/keepalive.$t.$r.txt rps p99
    load "$out" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://${ADDR[$t]}:${PORT[$t]}/" ||
        { show_log "$out"; fail "keepalive $t round $r: wrk failed"; return; }
    rps=$(awk '/^Requests\/sec:/{print $2}' "$out")
    p99=$(lat_ms "$(awk '$1 == "99%" {print $2}' "$out")" 2>/dev/null || true)
    [[ -n $rps && -n $p99 ]] || { show_log "$out"; fail "keepalive $t round $r: no figure"; return; }
    record keepalive_rps "$t" "$rps"
    record keepalive_p99_ms "$t" "$p99"
    log "round $r keepalive $t: $rps req/s, p99 $p99 ms ($(wrk_errors "$out") errors)"
}

run_h2() {
    local t=$1 r=$2 out=$TMP/h2.$t.$r.txt rps
    [[ $t == direct ]] && return
    load "$out" h2load -c $((CONNS / 10)) -m 10 -D "$DURATION" "https://${ADDR[$t]}:443/" ||
        { show_log "$out"; fail "h2 $t round $r: h2load failed"; return; }
    grep -q 'Application protocol: h2' "$out" || { show_log "$out"; fail "h2 $t round $r: not h2"; return; }
    rps=$(awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($i == "req/s,") print $(i - 1) }' "$out")
    [[ -n $rps ]] || { show_log "$out"; fail "h2 $t round $r: no req/s"; return; }
    record h2_rps "$t" "$rps"
    log "round $r h2        $t: $rps req/s"
}

run_tlsnew() {
    local t=$1 r=$2 out=$TMP/tlsnew.$t.$r.txt rps
    [[ $t == direct ]] && return
    load "$out" wrk -t1 -c50 -d"${DURATION}s" -H 'Connection: close' "https://${ADDR[$t]}:443/" ||
        { show_log "$out"; fail "tlsnew $t round $r: wrk failed"; return; }
    rps=$(awk '/^Requests\/sec:/{print $2}' "$out")
    [[ -n $rps ]] || { show_log "$out"; fail "tlsnew $t round $r: no figure"; return; }
    record tlsnew_cps "$t" "$rps"
    log "round $r tlsnew    $t: $rps TLS connections/s ($(wrk_errors "$out") errors)"
}

run_idle() {
    local t=$1 r=$2 mode pid out before after ok bad per hold
    [[ $t == direct ]] && return
    for mode in plain tls; do
        start_proxy "$t" || { fail "idle $t round $r: the proxy did not restart"; return; }
        pid=${PROXY_PID[$t]}
        sleep 1
        before=$(rss_kib "$pid")
        out=$TMP/idle-$mode.$t.$r.txt
        local port=80 flags=(-http)
        [[ $mode == tls ]] && port=443 flags=(-http -tls)
        ip netns exec "$NS" taskset -c 0 "$LABTOOLS" hold -target "${ADDR[$t]}:$port" "${flags[@]}" \
            -n "$IDLE_CONNS" -timeout 10s -max 50s >"$out" 2>"$out.err" &
        hold=$!
        PIDS+=($hold)
        if ! wait_for 40 grep -qs '^ready' "$out"; then
            stop_pid "$hold"; forget_pid "$hold"
            show_log "$out.err"; fail "idle $mode $t round $r: the connections were not all open within 40 s"; continue
        fi
        read -r _ ok bad <"$out"
        sleep 1
        after=$(rss_kib "$pid")
        stop_pid "$hold"; forget_pid "$hold"
        if [[ $bad -ne 0 || -z $before || -z $after ]]; then
            show_log "$out.err"; fail "idle $mode $t round $r: $bad of $IDLE_CONNS connections failed"; continue
        fi
        per=$(awk -v a="$after" -v b="$before" -v n="$ok" 'BEGIN { printf "%.2f", (a - b) / n }')
        record "idle_${mode}_kib" "$t" "$per"
        log "round $r idle $mode $t: RSS $before -> $after KiB for $ok connections: $per KiB each"
    done
}

for r in $(seq 1 "$ROUNDS"); do
    log "=== round $r/$ROUNDS (${DURATION}s per run)"
    for w in "${WORKLOADS[@]}"; do
        for t in "${TARGETS[@]}"; do "run_$w" "$t" "$r"; done
    done
done
UPTIME_AFTER=$(uptime)

# ---- report ----------------------------------------------------------------------

METRICS=()
for w in "${WORKLOADS[@]}"; do
    case $w in
        keepalive) METRICS+=(keepalive_rps keepalive_p99_ms) ;;
        h2) METRICS+=(h2_rps) ;;
        tlsnew) METRICS+=(tlsnew_cps) ;;
        idle) METRICS+=(idle_plain_kib idle_tls_kib) ;;
    esac
done
title() {
    case $1 in
        keepalive_rps) echo "HTTP/1.1 keep-alive: wrk -t1 -c$CONNS, 100-byte body; req/s (higher is better)" ;;
        keepalive_p99_ms) echo "HTTP/1.1 keep-alive: p99 latency, ms (lower is better)" ;;
        h2_rps) echo "HTTP/2 over TLS: h2load -c$((CONNS / 10)) -m10; req/s (higher is better)" ;;
        tlsnew_cps) echo "new TLS connections (ECDSA P-256), a request each: wrk -c50 'Connection: close'; conn/s (higher is better)" ;;
        idle_plain_kib) echo "idle keep-alive: $IDLE_CONNS connections after one request each; proxy RSS KiB per connection (lower is better)" ;;
        idle_tls_kib) echo "idle keep-alive over TLS: $IDLE_CONNS connections after one request each; proxy RSS KiB per connection (lower is better)" ;;
    esac
}
{
    echo
    echo "bench-http: $ROUNDS round(s) x ${DURATION}s, medians; tandem $TANDEM_SRC; $(haproxy -v 2>/dev/null | head -n 1 | awk '{print "HAProxy", $3}')"
    uptimes
    for m in "${METRICS[@]}"; do
        echo
        title "$m"
        printf '  %-9s %10s %10s %10s %4s %9s\n' target median min max n /haproxy
        for t in direct haproxy tandem; do
            [[ -s $RES/$m.$t ]] || continue
            read -r med min max n < <(stats "$RES/$m.$t")
            rh=-
            [[ $t == tandem ]] && rh=$(ratio "$med" "$(median "$m" haproxy)")
            printf '  %-9s %10s %10s %10s %4s %9s\n' "$t" "$med" "$min" "$max" "$n" "$rh"
        done
    done
    true
} | tee "$TMP/report.txt"

results_file() {
    local sep="" m rh
    printf '{"rounds":%d,"duration_s":%d,"conns":%d,"idle_conns":%d,' "$ROUNDS" "$DURATION" "$CONNS" "$IDLE_CONNS"
    printf '"tandem":%s,"haproxy":%s,' "$(json_str "$TANDEM_SRC")" "$(json_str "$(haproxy -v 2>/dev/null | head -n 1)")"
    uptimes_results_json "${METRICS[@]}"
    printf ',"ratios":{'
    for m in "${METRICS[@]}"; do
        rh=$(ratio "$(median "$m" tandem)" "$(median "$m" haproxy)")
        [[ $rh == - ]] && rh=null
        printf '%s"%s":{"vs_haproxy":%s}' "$sep" "$m" "$rh"
        sep=","
    done
    printf '},"ok":%s}\n' "$(json_ok)"
}
write_json results_file
exit $FAILED
