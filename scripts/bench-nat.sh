#!/usr/bin/env bash
# The nat figures of issue 11: a mode: nat cluster (the kernel forwards and
# DNATs, Tandem writes the rules and streams conntrack) against HAProxy
# (mode tcp, nbthread 1) and direct routing, across the same namespaces;
# memory per established flow on both boxes of a pair; conntrack
# replication (a Go test in cmd/tandem/node, run from here). The idle
# connections are `labtools hold` against `labtools echo -raw`.
#
# Usage: scripts/bench-nat.sh [-o results.json] [--only LIST] [-n PREFIX] [--quick] [--keep]
# Env:   DURATION     seconds per load run [10]
#        ROUNDS       rounds, interleaved direct, haproxy, tandem-nat [3]
#        IDLE_FLOWS   established flows held for the memory figure [10000]
#        PROXY_NICE   nice value of HAProxy and Tandem [0]
#        RPS          1: steer each namespace's received packets to its own
#                     "box's" CPU with RPS (client 0; lb and server 1), so
#                     the lb's forwarding runs on CPU 1 like the proxies'
#                     work, not on the sender's CPU [0]
#        QUIET_WAIT   before each run, wait up to this many seconds for a
#                     second in which both CPUs are at least 80% idle (other
#                     jobs on a shared machine) [30]; 0 = do not wait
#        TANDEM_BIN   tandem binary [built from ./cmd/tandem into a temp dir]
#        LABTOOLS_BIN labtools binary [built from ./scripts/labtools]
#        BENCH_NS     namespace prefix, as -n [tbnat-PID]
#        TANDEM_FIGURES_RATES, _STEP, _BULK, _BULK_ROUNDS: the replication
#                     test's (see cmd/tandem/node/flowsfig_linux_test.go)
#
# --quick: a smoke run that checks the script end to end in about two
# minutes, no figure to publish: DURATION=2 ROUNDS=1 IDLE_FLOWS=500
# QUIET_WAIT=0 and the replication test at 5,000 flows/s for 1 s with a
# bulk of 5,000 (each unless set in the environment).
# --only: a subset of short,bulk,memory,replication. Namespaces PREFIX-c
# (client), PREFIX-lb (the balancer, the only one with ip_forward=1),
# PREFIX-s (server) and PREFIX-lb2 (the backup, memory only), addresses
# from 198.18.0.0/15 only:
#
#   client 198.18.0.2/24 eth0 ── eth0 198.18.0.1/24  lb  eth1 198.19.1.11/24 ── eth0 198.19.1.21/24 server
#          route 198.19.0.0/16       VIPs (Tandem): 198.18.0.100/24 eth0,              default via
#          via 198.18.0.1            198.19.1.1/24 dev eth1; HAProxy: 198.18.0.101     198.19.1.11
#                                    eth2 198.18.3.1/30 ── eth2 198.18.3.2/30 lb2 (eth0, eth1 lead nowhere)
#
#   direct      client → 198.19.1.21 (nginx :8080, iperf3 :5201), routed by
#               the lb namespace: the same veths and hops as the others,
#               no netfilter at all (Tandem is stopped, its table gone)
#   haproxy     198.18.0.101 :80 :5201 :9000 in the lb namespace
#   tandem-nat  198.18.0.100 :80 :5201 :9000, mode: nat, return: gateway;
#               one node, alone: MASTER (started for its runs, stopped after)
#   nat-paused  diagnostic, short only: tandem-nat with the node stopped
#               (SIGSTOP) for the run: the kernel forwards, NATs and makes
#               conntrack events that nobody reads
# The server's default route is the lb's own 198.19.1.11 rather than the
# inside VIP, so direct and HAProxy work while Tandem is stopped; for the
# kernel that is the same hop. Load generators run on CPU 0, HAProxy,
# Tandem, nginx and iperf3 -s on CPU 1 (taskset). The kernel forwards in
# the softirq of the CPU that sent the packet (a veth hands it to the
# receiving side on the sender's CPU): client → server packets are routed
# and NATed on CPU 0, the answers on CPU 1. Each run's per-CPU busy and
# softirq shares (/proc/stat, the whole machine) are printed with it.
#
# Workloads, per round in the order direct, haproxy, tandem-nat, medians:
#   short        wrk -t1 -c50 -H 'Connection: close', 100-byte body  req/s
#   bulk         iperf3 -P 1 and -P 4, receiver sum                 Gbit/s
#   memory       a pair (lb priority 150, lb2 100, both restarted, IN SYNC),
#                IDLE_FLOWS connections through the VIP held idle (labtools
#                hold, to labtools echo -raw on the server): per flow,
#                the nf_conntrack slab (objects × size, /proc/slabinfo)
#                and the kmalloc caches (the entry's extensions), on the
#                master, and on the backup (measured as what flushing the
#                backup's table frees, then again as the bulk of a fresh
#                lb2 adds), and each node's VmRSS change
#   replication  go test -run TestNATReplicationFigures ./cmd/tandem/node
#                (TANDEM_FIGURES=1): entries/s sustained, lag p50/p99, bulk
#                of 100,000 entries to a fresh peer (see that test; it fails
#                below its floors, and so does this run)
# Prints Markdown tables with ratios (tandem-nat/haproxy, /direct) and the
# machine's uptime (load) before and after; JSON with -o. Exit 0 when every
# run produced a figure. Needs root and Go; installs haproxy, wrk, iperf3,
# nginx, conntrack and jq with scripts/deps.sh. Only the processes this script
# started are stopped, by PID; the namespaces are deleted on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

NS=${BENCH_NS:-tbnat-$$}
ONLY=short,bulk,memory,replication
QUICK=0

BENCH=bench-nat
# usage, die, log, num, record, fail, stats, median, ratio, JSON helpers
# (lib/bench.sh); stop_pid, forget_pid, wait_for, set_nice (lib/proc.sh);
# build_tandem, build_labtools (lib/build.sh); TMP, PIDS, the cleanup of
# our PIDs and namespaces, nsbench_netns NAME, is_proc, rss_kib, show_log
. "$ROOT/scripts/lib/nsbench.sh"
# nginx_bench_head
. "$ROOT/scripts/lib/nginx.sh"
# extra_opt: --quick, as bench_opt takes its options
extra_opt() {
    case $1 in
        --quick) QUICK=1; SHIFT=1 ;;
        *) return 1 ;;
    esac
}
nsbench_args "$@"
if [[ $QUICK -eq 1 ]]; then
    : "${DURATION:=2}" "${ROUNDS:=1}" "${IDLE_FLOWS:=500}" "${QUIET_WAIT:=0}"
    : "${TANDEM_FIGURES_RATES:=5000}" "${TANDEM_FIGURES_STEP:=1}"
    : "${TANDEM_FIGURES_BULK:=5000}" "${TANDEM_FIGURES_BULK_ROUNDS:=1}"
    export TANDEM_FIGURES_RATES TANDEM_FIGURES_STEP TANDEM_FIGURES_BULK TANDEM_FIGURES_BULK_ROUNDS
fi
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
IDLE_FLOWS=${IDLE_FLOWS:-10000}
PROXY_NICE=${PROXY_NICE:-0}
QUIET_WAIT=${QUIET_WAIT:-30}
RPS=${RPS:-0}
# PREFIX-lb2 stays a short name; the veths get names of their own (veth)
[[ ${#NS} -le 20 ]] || die "namespace prefix '$NS' is longer than 20"
num DURATION 1 600
num ROUNDS 1 50
num IDLE_FLOWS 100 18000 "the open-file limit is 20,000 per process"
[[ $PROXY_NICE =~ ^-?[0-9]+$ ]] || die "PROXY_NICE must be an integer"
num QUIET_WAIT 0 600
[[ $RPS == 0 || $RPS == 1 ]] || die "RPS must be 0 or 1"
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs (load generator on 0, balancers and servers on 1)"

TARGETS=(direct haproxy tandem-nat)
IFS=, read -r -a WORKLOADS <<<"$ONLY"
for w in "${WORKLOADS[@]}"; do
    case $w in short|bulk|memory|replication) ;; *) die "--only: short,bulk,memory,replication (got '$w')" ;; esac
done
has() { [[ ",$ONLY," == *",$1,"* ]]; }

"$ROOT/scripts/deps.sh" haproxy wrk iperf3 nginx conntrack jq >&2 || die "scripts/deps.sh failed"
for c in ip taskset haproxy wrk iperf3 nginx go ss conntrack jq nft; do
    command -v "$c" >/dev/null || die "$c missing"
done
nsbench_init bench-nat
bench_started
[[ $QUICK -eq 1 ]] && log "--quick: a smoke run of the script, not figures to publish"

C=$NS-c
L=$NS-lb
S=$NS-s
B=$NS-lb2
in_ns() { local n=$1; shift; ip netns exec "$n" "$@"; }

# ns_listening NS ADDR PORT: a TCP listener on ADDR:PORT in namespace NS
ns_listening() {
    in_ns "$1" ss -Hltn "sport = :$3" 2>/dev/null | awk '{print $4}' | grep -qx -- "$2:$3"
}

build_tandem || exit 1
build_labtools || exit 1

# ---- topology --------------------------------------------------------------------

for n in "$C" "$L" "$S" "$B"; do nsbench_netns "$n"; done
# veth NS1 IF1 NS2 IF2: a veth pair between two of our namespaces. It is
# made under a name of this run (tbn, our PID, a or b) and moved at once; a
# pair that could not be moved is deleted from the root namespace.
veth() {
    local a=tbn$$a b=tbn$$b
    ip link add "$a" type veth peer name "$b" || die "cannot create a veth pair"
    if ! { ip link set "$a" netns "$1" && ip link set "$b" netns "$3"; }; then
        ip link del "$a" 2>/dev/null || ip link del "$b" 2>/dev/null
        die "cannot move the veth pair into $1 and $3"
    fi
    ip -n "$1" link set "$a" name "$2" && ip -n "$3" link set "$b" name "$4" ||
        die "cannot name the veth pair in $1 and $3"
    ip -n "$1" link set "$2" up && ip -n "$3" link set "$4" up
}
veth "$C" eth0 "$L" eth0
veth "$L" eth1 "$S" eth0
veth "$L" eth2 "$B" eth2
ip -n "$C" addr add 198.18.0.2/24 dev eth0
ip -n "$C" route add 198.19.0.0/16 via 198.18.0.1
ip -n "$L" addr add 198.18.0.1/24 dev eth0
ip -n "$L" addr add 198.18.0.101/24 dev eth0 # HAProxy's
ip -n "$L" addr add 198.19.1.11/24 dev eth1
ip -n "$L" addr add 198.18.3.1/30 dev eth2
ip -n "$S" addr add 198.19.1.21/24 dev eth0
ip -n "$S" route add default via 198.19.1.11
ip -n "$B" addr add 198.18.3.2/30 dev eth2
# lb2's eth0 and eth1 lead nowhere (no dummy driver here: a veth pair
# whose other end stays in lb2); lb2 only ever is the backup
veth "$B" eth0 "$B" x0
veth "$B" eth1 "$B" x1
ip -n "$B" addr add 198.18.0.12/24 dev eth0
ip -n "$B" addr add 198.19.1.12/24 dev eth1
for n in "$L" "$B"; do in_ns "$n" sysctl -qw net.ipv4.ip_forward=1; done
for n in "$C" "$L"; do # room for the short-connection runs' ports
    in_ns "$n" sysctl -qw net.ipv4.ip_local_port_range="10000 64999" || true
    in_ns "$n" sysctl -qw net.ipv4.tcp_tw_reuse=1 || true
done
for n in "$L" "$S"; do in_ns "$n" sysctl -qw net.core.somaxconn=8192 || true; done
if [[ $RPS -eq 1 ]]; then # (ip netns exec mounts the namespace's own /sys)
    in_ns "$C" sh -c 'echo 1 > /sys/class/net/eth0/queues/rx-0/rps_cpus' || die "RPS: cannot steer the client's packets"
    for i in eth0 eth1; do
        in_ns "$L" sh -c "echo 2 > /sys/class/net/$i/queues/rx-0/rps_cpus" || die "RPS: cannot steer the lb's packets"
    done
    in_ns "$S" sh -c 'echo 2 > /sys/class/net/eth0/queues/rx-0/rps_cpus' || die "RPS: cannot steer the server's packets"
    log "RPS: received packets processed on CPU 0 in the client, CPU 1 in the lb and the server"
fi

# ---- servers ---------------------------------------------------------------------

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
        listen 198.19.1.21:8080 backlog=8192;
        location / {
            default_type text/plain;
            return 200 "$BODY";
        }
    }
}
CONF
ip netns exec "$S" taskset -c 1 nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
    >"$TMP/nginx.log" 2>&1 &
PIDS+=("$!")
ip netns exec "$S" taskset -c 1 iperf3 -s -B 198.19.1.21 -p 5201 >"$TMP/iperf3-server.log" 2>&1 &
PIDS+=("$!")
ip netns exec "$S" taskset -c 1 "$LABTOOLS" echo -raw -listen 198.19.1.21:9001 -idle 10m -max-conns 20000 \
    >"$TMP/sink.log" 2>&1 &
PIDS+=("$!")
wait_for 10 ns_listening "$S" 198.19.1.21 8080 || { show_log "$TMP/nginx/error.log"; die "nginx did not listen"; }
wait_for 10 ns_listening "$S" 198.19.1.21 5201 || { show_log "$TMP/iperf3-server.log"; die "iperf3 -s did not listen"; }
wait_for 10 ns_listening "$S" 198.19.1.21 9001 || { show_log "$TMP/sink.log"; die "the idle sink did not listen"; }

# ---- balancers -------------------------------------------------------------------

declare -A ADDR=([direct]=198.19.1.21 [haproxy]=198.18.0.101 [tandem-nat]=198.18.0.100 [nat-paused]=198.18.0.100)
declare -A HTTP_PORT=([direct]=8080 [haproxy]=80 [tandem-nat]=80 [nat-paused]=80)
declare -A IDLE_PORT=([haproxy]=9000 [tandem-nat]=9000)

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
    bind 198.18.0.101:80
    default_backend web
backend web
    server nginx 198.19.1.21:8080
frontend bulk
    bind 198.18.0.101:5201
    default_backend bulk
backend bulk
    server iperf3 198.19.1.21:5201
frontend idle
    bind 198.18.0.101:9000
    default_backend idle
backend idle
    server sink 198.19.1.21:9001
CONF
haproxy -c -f "$TMP/haproxy.cfg" >"$TMP/haproxy-check.log" 2>&1 || { show_log "$TMP/haproxy-check.log"; die "haproxy config check failed"; }
ip netns exec "$L" nice -n "$PROXY_NICE" taskset -c 1 haproxy -db -f "$TMP/haproxy.cfg" >>"$TMP/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")
wait_for 10 ns_listening "$L" 198.18.0.101 9000 || { show_log "$TMP/haproxy.log"; die "haproxy did not listen"; }

# tandem_conf BOX NAME PRIORITY SELF PEER [RT]: the node's config, one nat
# cluster per workload; RT is node.rt_priority (the product's default
# when empty).
tandem_conf() {
    local dir=$TMP/$1
    mkdir -p "$dir"
    cat >"$dir/tandem.yaml" <<CONF
node:
  name: $2
  api_socket: $dir/tandem.sock
  log_level: info${6:+
  rt_priority: $6}
cluster:
  bind: $4:7946
  peers: [$5:7946]
  insecure: true
  label: bench-nat
failover:
  interface: eth0
  priority: $3
  advert_interval: 50ms
  vips: [198.18.0.100/24, 198.19.1.1/24 dev eth1]
  garp:
    count: 0
clusters:
  - name: web
    vip: 198.18.0.100
    port: 80
    mode: nat
    servers:
      - {name: nginx, address: 198.19.1.21:8080}
  - name: bulk
    vip: 198.18.0.100
    port: 5201
    mode: nat
    servers:
      - {name: iperf3, address: 198.19.1.21:5201}
  - name: idle
    vip: 198.18.0.100
    port: 9000
    mode: nat
    servers:
      - {name: sink, address: 198.19.1.21:9001}
CONF
    "$TANDEM" validate --config "$dir/tandem.yaml" >"$dir/validate.log" 2>&1 ||
        { show_log "$dir/validate.log"; die "$1: tandem validate failed"; }
}
# lb: the throughput node, alone, normal scheduling at nice PROXY_NICE as
# HAProxy; lb1 and lb2: the memory pair, scheduled as the product does by
# default (SCHED_RR), so a busy machine does not delay their adverts
tandem_conf lb lb1 150 198.18.3.1 198.18.3.2 0
tandem_conf lb1 lb1 150 198.18.3.1 198.18.3.2
tandem_conf lb2 lb2 100 198.18.3.2 198.18.3.1
ns_of() { if [[ $1 == lb2 ]]; then echo "$B"; else echo "$L"; fi; }

# tandem_status BOX: the node's status (JSON; 1 when it does not answer)
tandem_status() {
    in_ns "$(ns_of "$1")" "$TANDEM" status --socket "$TMP/$1/tandem.sock" --json 2>/dev/null
}
is_master() { # is_master BOX (lb or lb1)
    tandem_status "$1" | jq -e '.state == "MASTER"' >/dev/null 2>&1 &&
        ip -n "$L" -br addr show dev eth0 | grep -qw "198.18.0.100/24"
}
# is_backup_in_sync: lb2 is BACKUP and has the master's whole conntrack
# table (CONTRACT.md's persistence.conntrack_in_sync)
is_backup_in_sync() {
    tandem_status lb2 | jq -e '.state == "BACKUP" and .persistence.conntrack_in_sync == true' >/dev/null 2>&1
}

declare -A TANDEM_PID=()
# start_tandem BOX: runs the node, lb and lb1 on CPU 1 (and wait for
# MASTER), lb2 on CPU 0: the backup is another box, and two SCHED_RR
# nodes on one CPU delay each other's adverts by a time slice (100 ms)
start_tandem() {
    local box=$1 pid cpu=1
    [[ $box == lb2 ]] && cpu=0
    ip netns exec "$(ns_of "$box")" taskset -c "$cpu" "$TANDEM" run --config "$TMP/$box/tandem.yaml" >>"$TMP/$box.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    TANDEM_PID[$box]=$pid
    if [[ $box != lb2 ]]; then
        wait_for 15 is_master "$box" || { show_log "$TMP/$box.log"; log "$box: not MASTER with 198.18.0.100 within 15 s"; return 1; }
    fi
    wait_for 5 is_proc "$pid" "$(basename "$TANDEM" | cut -c1-15)" || { log "PID $pid is not tandem"; return 1; }
    [[ $box == lb ]] && set_nice "$pid"
    return 0
}
exited() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null); [[ -z $st || $st == Z* ]]; } # (a zombie until reaped)
# stop_tandem BOX: SIGTERM, and up to 20 s for the node to hand over,
# rewrite its flows and remove its table (stop_pid's 3 s are too short)
stop_tandem() {
    local box=$1 pid
    pid=${TANDEM_PID[$box]:-}
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null
    WAIT_STEP=0.1 wait_for 20 exited "$pid" || log "$box: still running 20 s after SIGTERM"
    stop_pid "$pid"
    forget_pid "$pid"
    TANDEM_PID[$box]=""
}

# the table and its conntrack hooks are gone once the node stops
nat_table_gone() { ! in_ns "$L" nft list tables 2>/dev/null | grep -q 'inet tandem'; }

# ---- checks: every target answers the body -------------------------------------------

answers() { # answers TARGET
    local got
    got=$(in_ns "$C" bash -c "exec 3<>/dev/tcp/${ADDR[$1]}/${HTTP_PORT[$1]} && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && timeout 5 cat <&3" 2>/dev/null | tail -n 1 || true)
    [[ $got == "$BODY" ]]
}
answers direct || die "direct: 198.19.1.21:8080 did not answer the body through the lb namespace"
answers haproxy || { show_log "$TMP/haproxy.log"; die "haproxy did not answer the body"; }
start_tandem lb || die "tandem did not start"
wait_for 10 answers tandem-nat || { show_log "$TMP/lb.log"; die "tandem-nat: 198.18.0.100:80 did not answer the body"; }
# marks 0x7a4d0000|cluster: the upper half is 0x7a4d = 31309
ct_marks=$(in_ns "$L" conntrack -L -d 198.18.0.100 2>/dev/null |
    awk -F 'mark=' 'NF > 1 { split($2, m, " "); if (int(m[1] / 65536) == 31309) n++ } END { print n + 0 }')
[[ $ct_marks -ge 1 ]] || die "tandem-nat: no conntrack entry with Tandem's mark (0x7a4d0000|cluster) in the lb namespace"
stop_tandem lb
wait_for 5 nat_table_gone || die "the table inet tandem is still there after the node stopped"
log "all targets answer: ${TARGETS[*]}"

# ---- measurement helpers ----------------------------------------------------------

bench_results # RES; record METRIC TARGET VALUE; fail MESSAGE

# cpu_snap: "cpuN total idle softirq" lines for CPUs 0 and 1
cpu_snap() { awk '$1 == "cpu0" || $1 == "cpu1" { t = 0; for (i = 2; i <= NF; i++) t += $i; print $1, t, $5 + $6, $8 }' /proc/stat; }
# cpu_record METRIC_PREFIX TARGET BEFORE AFTER: busy and softirq % per CPU
cpu_record() {
    local line
    while read -r line; do
        # shellcheck disable=SC2086 # (the words of the line)
        set -- $line
        record "$1_cpu0_busy" "$2" "$3"; record "$1_cpu0_si" "$2" "$4"
        record "$1_cpu1_busy" "$2" "$5"; record "$1_cpu1_si" "$2" "$6"
    done < <(paste <(echo "$3") <(echo "$4") | awk -v m="$1" -v t="$2" '
        { dt = $6 - $2; di = $7 - $3; ds = $8 - $4
          b[$1] = (dt > 0) ? 100 * (dt - di) / dt : 0; s[$1] = (dt > 0) ? 100 * ds / dt : 0 }
        END { printf "%s %s %.0f %.0f %.0f %.0f\n", m, t, b["cpu0"], s["cpu0"], b["cpu1"], s["cpu1"] }')
}
cpu_note() { # cpu_note METRIC_PREFIX TARGET: the last run's shares, for the log
    printf 'CPU0 %s%% busy (%s%% softirq), CPU1 %s%% (%s%%)' \
        "$(tail -n1 "$RES/$1_cpu0_busy.$2")" "$(tail -n1 "$RES/$1_cpu0_si.$2")" \
        "$(tail -n1 "$RES/$1_cpu1_busy.$2")" "$(tail -n1 "$RES/$1_cpu1_si.$2")"
}
# proc_cpu PID: utime + stime in clock ticks
proc_cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

# quiet: waits (at most QUIET_WAIT s) for a second with both CPUs ≥ 80%
# idle; counts the runs that started without one
NOISY=0
idle_pct() { # idle_pct SNAP_BEFORE SNAP_AFTER: the least idle % of the two CPUs
    paste <(echo "$1") <(echo "$2") | awk '{ dt = $6 - $2; p = (dt > 0) ? 100 * ($7 - $3) / dt : 0; if (NR == 1 || p < m) m = p } END { printf "%.0f", m }'
}
quiet() {
    [[ $QUIET_WAIT -gt 0 ]] || return 0
    local end=$((SECONDS + QUIET_WAIT)) a b
    while :; do
        a=$(cpu_snap); sleep 1; b=$(cpu_snap)
        [[ $(idle_pct "$a" "$b") -ge 80 ]] && return 0
        if [[ $SECONDS -ge $end ]]; then
            NOISY=$((NOISY + 1)); log "the machine stayed busy for ${QUIET_WAIT}s (other jobs); running anyway"
            return 0
        fi
    done
}

wrk_run() { # wrk_run OUTFILE ARGS...: bounded in time
    local out=$1; shift
    timeout -k 5 $((DURATION + 30)) ip netns exec "$C" taskset -c 0 wrk "$@" >"$out" 2>&1
}
wrk_errors() { # total socket errors and non-2xx responses of a wrk output
    awk '/Socket errors:/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) { s += $i } }
         /Non-2xx or 3xx responses:/ { s += $NF }
         END { print s + 0 }' "$1"
}

# tandem_cpu_start / tandem_cpu_record METRIC: Tandem's own CPU share
# (user + system of the process) over a run, in % of one CPU
tandem_cpu_start() { T_CPU0=$(proc_cpu "${TANDEM_PID[lb]}"); T_T0=$(date +%s%N); }
tandem_cpu_record() { # tandem_cpu_record METRIC [CONNECTIONS]: also µs per connection
    local c1 t1
    c1=$(proc_cpu "${TANDEM_PID[lb]}"); t1=$(date +%s%N)
    record "$1" tandem-nat "$(awk -v c="$((c1 - T_CPU0))" -v hz="$HZ" -v ns="$((t1 - T_T0))" 'BEGIN { printf "%.1f", 100 * c / hz / (ns / 1e9) }')"
    [[ -n ${2:-} && ${2:-0} -gt 0 ]] &&
        record "$1_us_per_conn" tandem-nat "$(awk -v c="$((c1 - T_CPU0))" -v hz="$HZ" -v n="$2" 'BEGIN { printf "%.0f", 1e6 * c / hz / n }')"
    return 0
}

run_short() {
    local t=$1 r=$2 out rps c0 c1
    out=$TMP/short.$t.$r.txt
    quiet
    c0=$(cpu_snap)
    [[ $t == tandem-nat ]] && tandem_cpu_start
    wrk_run "$out" -t1 -c50 -d"${DURATION}s" -H 'Connection: close' "http://${ADDR[$t]}:${HTTP_PORT[$t]}/" ||
        { show_log "$out"; fail "short $t round $r: wrk failed"; return; }
    c1=$(cpu_snap)
    [[ $t == tandem-nat ]] && tandem_cpu_record short_tandem_cpu "$(awk '/requests in/ {print $1}' "$out")"
    rps=$(awk '/^Requests\/sec:/{print $2}' "$out")
    [[ -n $rps ]] || { show_log "$out"; fail "short $t round $r: no Requests/sec"; return; }
    record short_rps "$t" "$rps"
    record short_errors "$t" "$(wrk_errors "$out")"
    cpu_record short "$t" "$c0" "$c1"
    log "round $r short      $t: $rps req/s ($(wrk_errors "$out") errors); $(cpu_note short "$t")"
}

run_bulk() {
    local t=$1 r=$2 p out gbps c0 c1
    for p in 1 4; do
        out=$TMP/bulk$p.$t.$r.txt
        quiet
        c0=$(cpu_snap)
        if ! timeout -k 5 $((DURATION + 30)) ip netns exec "$C" taskset -c 0 \
            iperf3 -c "${ADDR[$t]}" -p 5201 -t "$DURATION" -P "$p" -f g --connect-timeout 5000 >"$out" 2>&1; then
            show_log "$out"; fail "bulk -P $p $t round $r: iperf3 failed"; continue
        fi
        c1=$(cpu_snap)
        gbps=$(awk '/receiver/ { for (i = 2; i <= NF; i++) if ($i == "Gbits/sec") v = $(i - 1) }
                    /receiver/ && /SUM/ { s = v } END { print (s != "") ? s : v }' "$out")
        [[ -n $gbps ]] || { show_log "$out"; fail "bulk -P $p $t round $r: no receiver figure"; continue; }
        record "bulk${p}_gbps" "$t" "$gbps"
        cpu_record "bulk$p" "$t" "$c0" "$c1"
        log "round $r bulk -P $p  $t: $gbps Gbit/s; $(cpu_note "bulk$p" "$t")"
        sleep 0.5 # the iperf3 server takes the next test
    done
}

# ---- memory per established flow ------------------------------------------------------

# slab_snap: "CT_OBJS CT_SIZE KMALLOC_BYTES SLAB_KIB": the nf_conntrack
# cache's active objects and object size, the bytes of the kmalloc caches'
# active objects (the entries' extensions: NAT binding, events; global,
# so other work on the machine shows up there), and Slab: of meminfo
slab_snap() {
    local s
    s=$(awk '$1 == "nf_conntrack" { co = $2; cs = $4 } $1 ~ /^kmalloc-/ { k += $2 * $4 }
             END { printf "%d %d %d", co, cs, k }' /proc/slabinfo)
    echo "$s $(awk '/^Slab:/ {print $2}' /proc/meminfo)"
}
ct_count() { in_ns "$1" conntrack -C 2>/dev/null || echo 0; } # entries in namespace $1
# per_flow BEFORE AFTER N FIELD: bytes per flow of a slab_snap field
# (1 nf_conntrack, 3 kmalloc, 4 Slab: in KiB)
per_flow() {
    awk -v a="$1" -v b="$2" -v n="$3" -v f="$4" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        if (f == 1) d = (y[1] - x[1]) * y[2]; else if (f == 4) d = (y[4] - x[4]) * 1024; else d = y[f] - x[f]
        printf "%.0f", (n > 0) ? d / n : 0 }'
}
in_sync_with() { # in_sync_with N: lb2 IN SYNC and holding at least N entries
    is_backup_in_sync && [[ $(ct_count "$B") -ge $1 ]]
}

# hold_flows TARGET_ADDR OUT: IDLE_FLOWS connections held from the client
# (CPU 0); HOLD is its PID, HELD the connections open; 1 if some failed
hold_flows() {
    local bad
    HELD=0
    ip netns exec "$C" taskset -c 0 "$LABTOOLS" hold -target "$1" -n "$IDLE_FLOWS" -timeout 10s -max 300s >"$2" 2>"$2.err" &
    HOLD=$!
    PIDS+=("$HOLD")
    wait_for 60 grep -qs '^ready' "$2" || { show_log "$2.err"; return 1; }
    read -r _ HELD bad <"$2"
    [[ $bad -eq 0 ]] || { show_log "$2.err"; return 1; }
}
unhold() { stop_pid "$HOLD"; forget_pid "$HOLD"; }

run_memory() {
    local r=$1 out ok s0 s1 s2 s3 s4 d0 d1 m0 m1 b0 b1 b4 l0 l1 k0 k1 k2 k4 n
    out=$TMP/memory.$r.txt
    stop_tandem lb1; stop_tandem lb2
    # the same connections without a balancer (routed, no conntrack): what
    # the client's and the server's sockets cost, to take off the master's
    in_ns "$L" conntrack -F >/dev/null 2>&1 || true
    d0=$(slab_snap)
    hold_flows "198.19.1.21:9001" "$out.direct" || { unhold; fail "memory round $r: direct connections failed"; return; }
    sleep 2
    d1=$(slab_snap)
    unhold
    sleep 2
    in_ns "$L" conntrack -F >/dev/null 2>&1 || true
    in_ns "$B" conntrack -F >/dev/null 2>&1 || true
    start_tandem lb1 || { fail "memory round $r: lb1 did not become MASTER"; return; }
    start_tandem lb2 || { fail "memory round $r: lb2 did not start"; stop_tandem lb1; return; }
    wait_for 30 is_backup_in_sync || { show_log "$TMP/lb2.log"; fail "memory round $r: lb2 not IN SYNC within 30 s"; stop_tandem lb1; stop_tandem lb2; return; }
    sleep 2
    s0=$(slab_snap); m0=$(rss_kib "${TANDEM_PID[lb1]}"); b0=$(rss_kib "${TANDEM_PID[lb2]}")
    l0=$(ct_count "$L"); k0=$(ct_count "$B")
    if ! hold_flows "198.18.0.100:${IDLE_PORT[tandem-nat]}" "$out"; then
        unhold; stop_tandem lb1; stop_tandem lb2
        fail "memory round $r: the flows were not all open within 60 s"; return
    fi
    ok=$HELD
    if ! wait_for 30 in_sync_with $((k0 + ok)); then
        unhold; stop_tandem lb1; stop_tandem lb2
        fail "memory round $r: lb2 holds $(ct_count "$B") entries of $((k0 + ok))"; return
    fi
    sleep 2
    s1=$(slab_snap); m1=$(rss_kib "${TANDEM_PID[lb1]}"); b1=$(rss_kib "${TANDEM_PID[lb2]}")
    l1=$(ct_count "$L"); k1=$(ct_count "$B")
    # the backup's entries alone: what flushing its table frees
    in_ns "$B" conntrack -F >/dev/null 2>&1
    sleep 1
    s2=$(slab_snap); k2=$(ct_count "$B")
    # and what a fresh lb2's bulk adds
    stop_tandem lb2
    in_ns "$B" conntrack -F >/dev/null 2>&1
    sleep 1
    s3=$(slab_snap)
    start_tandem lb2 && wait_for 30 in_sync_with "$ok" ||
        { fail "memory round $r: a fresh lb2 did not get the bulk of $ok flows within 30 s"; }
    sleep 2
    s4=$(slab_snap); b4=$(rss_kib "${TANDEM_PID[lb2]}"); k4=$(ct_count "$B")
    unhold
    stop_tandem lb2; stop_tandem lb1

    n=$((l1 - l0))
    # the master's entries: what is left once the backup's are flushed
    record mem_master_ct_b tandem-nat "$(per_flow "$s0" "$s2" "$n" 1)"
    # kmalloc and the whole Slab: less what the same connections cost direct
    record mem_master_kmalloc_b tandem-nat "$(awk -v a="$(per_flow "$s0" "$s2" "$n" 3)" -v b="$(per_flow "$d0" "$d1" "$IDLE_FLOWS" 3)" 'BEGIN { print a - b }')"
    record mem_master_slab_b tandem-nat "$(awk -v a="$(per_flow "$s0" "$s2" "$n" 4)" -v b="$(per_flow "$d0" "$d1" "$IDLE_FLOWS" 4)" 'BEGIN { print a - b }')"
    record mem_direct_slab_b direct "$(per_flow "$d0" "$d1" "$IDLE_FLOWS" 4)"
    record mem_master_rss_b tandem-nat "$(awk -v a="$m0" -v b="$m1" -v n="$ok" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')"
    record mem_backup_ct_b tandem-nat "$(per_flow "$s2" "$s1" "$((k1 - k2))" 1)"
    record mem_backup_kmalloc_b tandem-nat "$(per_flow "$s2" "$s1" "$((k1 - k2))" 3)"
    record mem_backup_slab_b tandem-nat "$(per_flow "$s2" "$s1" "$((k1 - k2))" 4)"
    record mem_backup_rss_b tandem-nat "$(awk -v a="$b0" -v b="$b1" -v n="$ok" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')"
    record mem_bulk_ct_b tandem-nat "$(per_flow "$s3" "$s4" "$k4" 1)"
    record mem_bulk_kmalloc_b tandem-nat "$(per_flow "$s3" "$s4" "$k4" 3)"
    record mem_bulk_rss_b tandem-nat "$(awk -v a="$b0" -v b="$b4" -v n="$ok" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')"
    log "round $r memory: $ok flows; lb $l0 -> $l1 entries, RSS $m0 -> $m1 KiB; lb2 $k0 -> $k1 entries (flushed: $k2; fresh bulk: $k4), RSS $b0 -> $b1 KiB (fresh, after the bulk: $b4)"
    log "round $r memory: slab (nf_conntrack objs, size, kmalloc bytes, Slab KiB): direct $d0 -> $d1 | start $s0 | flows $s1 | lb2 flushed $s2 | lb2 stopped $s3 | bulk $s4"
}

# ---- replication (a Go test) ---------------------------------------------------------

run_replication() {
    local out=$TMP/replication.txt
    log "replication: go test -run TestNATReplicationFigures ./cmd/tandem/node (TANDEM_FIGURES=1)"
    if ! TANDEM_FIGURES=1 timeout -k 10 600 go test -count=1 -timeout 590s -run TestNATReplicationFigures -v \
        ./cmd/tandem/node/ >"$out" 2>&1; then
        show_log "$out"; fail "replication: the Go test failed"; return
    fi
    grep -q '^ *|' "$out" || { show_log "$out"; fail "replication: no table in the test's output"; }
}

# ---- runs ------------------------------------------------------------------------

for r in $(seq 1 "$ROUNDS"); do
    log "=== round $r/$ROUNDS (${DURATION}s per run)"
    for t in "${TARGETS[@]}"; do
        has short || has bulk || break
        if [[ $t == tandem-nat ]]; then
            start_tandem lb || { fail "round $r: tandem did not start"; continue; }
        else
            nat_table_gone || fail "round $r: $t ran with Tandem's table present"
        fi
        has short && run_short "$t" "$r"
        has bulk && run_bulk "$t" "$r"
        if [[ $t == tandem-nat ]] && has short; then
            # diagnostic: the same with the node stopped (SIGSTOP) for the
            # run: the kernel forwards, NATs and makes the events, and
            # nobody reads them
            kill -STOP "${TANDEM_PID[lb]}"
            run_short nat-paused "$r"
            kill -CONT "${TANDEM_PID[lb]}"
        fi
        if [[ $t == tandem-nat ]]; then
            stop_tandem lb
            wait_for 5 nat_table_gone || fail "round $r: Tandem's table still there after the node stopped"
        fi
    done
    has memory && run_memory "$r"
done
has replication && run_replication
UPTIME_AFTER=$(uptime)

# ---- report ----------------------------------------------------------------------

cell() { # cell METRIC TARGET: "median (min–max)"
    local med min max n
    read -r med min max n < <(stats "$RES/$1.$2")
    if [[ $n -gt 1 ]]; then echo "$med ($min–$max)"; else echo "$med"; fi
}

{
    echo
    echo "bench-nat: $ROUNDS round(s) x ${DURATION}s, RPS=$RPS, medians (min–max); tandem $TANDEM_SRC; $(haproxy -v 2>/dev/null | head -n 1 | awk '{print "HAProxy", $3}'); $(uname -r)"
    echo "uptime before: $UPTIME_BEFORE"
    echo "uptime after:  $UPTIME_AFTER"
    [[ $NOISY -gt 0 ]] && echo "note: $NOISY run(s) started while the machine was busy (no quiet second within QUIET_WAIT=${QUIET_WAIT}s)"
    if has short || has bulk; then
        echo
        echo "| workload | direct | HAProxy | tandem-nat | nat/HAProxy | nat/direct | HAProxy/direct |"
        echo "|---|---|---|---|---|---|---|"
        for m in short_rps bulk1_gbps bulk4_gbps; do
            [[ -s $RES/$m.direct || -s $RES/$m.haproxy || -s $RES/$m.tandem-nat ]] || continue
            case $m in
                short_rps) w="short: wrk -c50, Connection: close, req/s" ;;
                bulk1_gbps) w="bulk: iperf3 -P 1, Gbit/s" ;;
                bulk4_gbps) w="bulk: iperf3 -P 4, Gbit/s" ;;
            esac
            echo "| $w | $(cell "$m" direct) | $(cell "$m" haproxy) | $(cell "$m" tandem-nat) |" \
                "$(ratio "$(median "$m" tandem-nat)" "$(median "$m" haproxy)") |" \
                "$(ratio "$(median "$m" tandem-nat)" "$(median "$m" direct)") |" \
                "$(ratio "$(median "$m" haproxy)" "$(median "$m" direct)") |"
        done
        echo
        echo "CPU during the runs (whole machine, /proc/stat; medians): busy % (of which softirq %); CPU 0 runs the load generator, CPU 1 the balancer and the servers"
        echo
        echo "| workload | target | CPU 0 | CPU 1 |"
        echo "|---|---|---|---|"
        for w in short bulk1 bulk4; do
            for t in "${TARGETS[@]}" nat-paused; do
                [[ -s $RES/${w}_cpu0_busy.$t ]] || continue
                echo "| $w | $t | $(median "${w}_cpu0_busy" "$t") ($(median "${w}_cpu0_si" "$t")) |" \
                    "$(median "${w}_cpu1_busy" "$t") ($(median "${w}_cpu1_si" "$t")) |"
            done
        done
        [[ -s $RES/short_rps.nat-paused ]] &&
            echo && echo "diagnostic: short connections through the nat cluster with the node stopped (SIGSTOP) during the run, so no event is read: $(cell short_rps nat-paused) req/s, $(ratio "$(median short_rps nat-paused)" "$(median short_rps haproxy)") × HAProxy"
        [[ -s $RES/short_tandem_cpu.tandem-nat ]] &&
            echo && echo "Tandem's own CPU during the short runs (conntrack events read and published, no peer): $(cell short_tandem_cpu tandem-nat) % of one CPU, $(cell short_tandem_cpu_us_per_conn tandem-nat) µs per connection"
        echo
        echo "per-round ratios (each round's runs side by side), medians (min–max):"
        for m in short_rps bulk1_gbps bulk4_gbps; do
            [[ -s $RES/$m.tandem-nat ]] || continue
            for ref in haproxy direct; do
                [[ -s $RES/$m.$ref && $(wc -l <"$RES/$m.$ref") -eq $(wc -l <"$RES/$m.tandem-nat") ]] || continue
                paste "$RES/$m.tandem-nat" "$RES/$m.$ref" | awk '$2 > 0 { printf "%.2f\n", $1 / $2 }' >"$RES/ratio_${m}_vs_$ref.tandem-nat"
                echo "  $m tandem-nat/$ref: $(cell "ratio_${m}_vs_$ref" tandem-nat)"
            done
        done
        for t in "${TARGETS[@]}"; do
            [[ -s $RES/short_errors.$t ]] || continue
            s=$(awk '{ s += $1 } END { print s + 0 }' "$RES/short_errors.$t")
            [[ $s -gt 0 ]] && echo "note: short: $t: $s wrk socket errors or non-2xx responses over all rounds"
        done
    fi
    if has memory && [[ -s $RES/mem_master_ct_b.tandem-nat ]]; then
        echo
        echo "memory per established flow, $IDLE_FLOWS idle flows, bytes (medians, min–max):"
        echo
        echo "| box | nf_conntrack slab | kmalloc (extensions) | Tandem RSS |"
        echo "|---|---|---|---|"
        echo "| master (lb: forwards, publishes the events) | $(cell mem_master_ct_b tandem-nat) | $(cell mem_master_kmalloc_b tandem-nat) | $(cell mem_master_rss_b tandem-nat) |"
        echo "| backup (lb2: entries written from the stream; freed by a flush) | $(cell mem_backup_ct_b tandem-nat) | $(cell mem_backup_kmalloc_b tandem-nat) | $(cell mem_backup_rss_b tandem-nat) |"
        echo "| backup, fresh (lb2 restarted: entries written from the bulk) | $(cell mem_bulk_ct_b tandem-nat) | $(cell mem_bulk_kmalloc_b tandem-nat) | $(cell mem_bulk_rss_b tandem-nat) |"
        echo
        echo "nf_conntrack is the entry itself (the cache's object size: $(awk '$1 == "nf_conntrack" {print $4}' /proc/slabinfo) B); its extensions (NAT binding, event cache) are one kmalloc'ed area, whose figure takes in whatever else the machine allocated meanwhile. Tandem keeps no state per flow (the kernel does): its RSS change is garbage-collected heap, not data. (JSON: the whole Slab: too, as noisy.)"
    fi
    if has replication && [[ -s $TMP/replication.txt ]]; then
        echo
        echo "conntrack replication (go test -run TestNATReplicationFigures ./cmd/tandem/node, TANDEM_FIGURES=1):"
        echo
        # its tables, a blank line between them
        awk '/^ *\|/ { if (!in_table && n++) print ""; in_table = 1; sub(/^ */, ""); print; next } { in_table = 0 }' \
            "$TMP/replication.txt"
        grep -E '^ *note:' "$TMP/replication.txt" | sed 's/^ *//' || true
    fi
    true
} | tee "$TMP/report.txt"

# results_file: the JSON of -o: every metric by target, the report, ok
results_file() {
    local metrics=() f m
    for f in "$RES"/*; do
        [[ -s $f ]] || continue
        m=${f##*/}
        m=${m%%.*}
        [[ " ${metrics[*]} " == *" $m "* ]] || metrics+=("$m")
    done
    printf '{"rounds":%d,"duration_s":%d,"idle_flows":%d,"proxy_nice":%d,"rps":%d,"quick":%s,' \
        "$ROUNDS" "$DURATION" "$IDLE_FLOWS" "$PROXY_NICE" "$RPS" "$([[ $QUICK -eq 1 ]] && echo true || echo false)"
    printf '"tandem":%s,"haproxy":%s,' "$(json_str "$TANDEM_SRC")" "$(json_str "$(haproxy -v 2>/dev/null | head -n 1)")"
    uptimes_results_json "${metrics[@]}"
    printf ',"report":%s,"ok":%s}\n' "$(json_str "$(cat "$TMP/report.txt")" | sed ':a;N;$!ba;s/\n/\\n/g')" "$(json_ok)"
}
TARGETS+=(nat-paused) # the diagnostic's figures too
write_json results_file
exit $FAILED
