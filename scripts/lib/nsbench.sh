# shellcheck shell=bash
# Scaffolding shared by the benchmarks that run in a network namespace of
# their own (bench-proxy.sh, bench-udp.sh, bench-persistence.sh) or in
# several (bench-nat.sh). Source it after setting BENCH, ROOT and NS; then
# nsbench_args "$@", nsbench_init NAME, and nsbench_netns to make the
# namespace NS, or nsbench_netns NAME for each of several (NS is then their
# prefix). It provides TMP, PIDS, a cleanup that stops our PIDs and deletes
# the namespaces it made, and nsx, listening, listening_udp, is_proc, rss_kib,
# show_log, stop_proxy, log_nice; with lib/bench.sh, lib/proc.sh and
# lib/build.sh.

. "$ROOT/scripts/lib/bench.sh"
. "$ROOT/scripts/lib/proc.sh"
. "$ROOT/scripts/lib/build.sh"

# nsbench_args ARGS...: the options (-n NETNS and those of bench_opt; a
# script with more defines extra_opt, which takes them as bench_opt does),
# then root and a namespace name ip(8) takes.
nsbench_args() {
    while [[ $# -gt 0 ]]; do
        case $1 in
            -n) [[ $# -ge 2 ]] || usage; NS=$2; shift 2 ;;
            *)
                bench_opt "$@" || { declare -F extra_opt >/dev/null && extra_opt "$@"; } || usage
                shift "$SHIFT" ;;
        esac
    done
    [[ $(id -u) -eq 0 ]] || die "must run as root"
    [[ $NS =~ ^[a-z][a-z0-9-]{0,14}$ ]] || die "bad namespace name '$NS'"
}

# nsbench_init NAME: refuses a namespace that exists already, takes the
# whole open-file limit, makes TMP and installs the cleanup traps.
nsbench_init() {
    if ip netns list | awk '{print $1}' | grep -qx -- "$NS"; then
        die "namespace $NS exists already (another run?); pick another with -n, or 'ip netns del $NS' if it is a leftover"
    fi
    # the open-file hard limit is 20,000 here: take it all, children inherit it
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    TMP=$(mktemp -d "/tmp/$1.XXXXXX")
    PIDS=()
    NS_MADE=0
    NSS=()
    trap nsbench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

nsbench_cleanup() {
    local rc=$? p n all=()
    set +e
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    [[ $NS_MADE -eq 1 ]] && all+=("$NS")
    all+=("${NSS[@]}")
    for n in "${all[@]}"; do
        # what is left in our namespaces (nginx's worker, say) is ours too
        p=$(ip netns pids "$n" 2>/dev/null | tr '\n' ' ')
        if [[ -n $p ]]; then
            log "stopping leftovers in $n: $p"
            kill -TERM $p 2>/dev/null; sleep 1; kill -KILL $p 2>/dev/null
        fi
        ip netns del "$n" 2>/dev/null
    done
    if [[ $KEEP -eq 1 || $rc -ne 0 ]]; then
        log "logs kept in $TMP"
    else
        rm -rf "$TMP"
    fi
    exit $rc
}

# nsbench_netns [NAME]: makes the namespace NS, or NAME (a benchmark with
# several namespaces names each from the prefix NS), deleted on exit; its lo
# up. NAME must not exist yet (another run, or a leftover).
nsbench_netns() {
    local n=${1:-$NS}
    if [[ $# -gt 0 ]]; then
        [[ $n =~ ^[a-z][a-z0-9-]{0,30}$ ]] || die "bad namespace name '$n'"
        if ip netns list | awk '{print $1}' | grep -qx -- "$n"; then
            die "namespace $n exists already (another run?); pick another prefix with -n, or 'ip netns del $n' if it is a leftover"
        fi
    fi
    ip netns add "$n" || die "cannot create namespace $n"
    if [[ $# -gt 0 ]]; then NSS+=("$n"); else NS_MADE=1; fi
    ip -n "$n" link set lo up
}

# nsx CMD...: run CMD in the namespace, in the foreground (a function: never
# put it in the background, $! would be a subshell, not CMD)
nsx() { ip netns exec "$NS" "$@"; }

# listening ADDR PORT: a TCP listener on ADDR:PORT in the namespace
listening() {
    nsx ss -Hltn "sport = :$2" 2>/dev/null | awk '{print $4}' | grep -qx -- "$1:$2"
}

# listening_udp ADDR PORT: a UDP socket bound to ADDR:PORT in the namespace
listening_udp() {
    nsx ss -Hlun "sport = :$2" 2>/dev/null | awk '{print $4}' | grep -qx -- "$1:$2"
}

# stop_proxy TARGET: stops the proxy PROXY_PID[TARGET] we started, if any.
stop_proxy() {
    if [[ -n ${PROXY_PID[$1]:-} ]]; then
        stop_pid "${PROXY_PID[$1]}"; forget_pid "${PROXY_PID[$1]}"; PROXY_PID[$1]=""
    fi
}

# log_nice: each proxy of PROXY_PID and the nice values of its threads.
log_nice() {
    local t
    for t in "${!PROXY_PID[@]}"; do
        log "$t: pid ${PROXY_PID[$t]}, nice of its threads: $(ps -L -o ni= -p "${PROXY_PID[$t]}" | sort -u | tr -s ' \n' ' ')"
    done
}

# is_proc PID NAME: PID is a live process whose command is NAME
is_proc() { [[ $(cat "/proc/$1/comm" 2>/dev/null) == "$2" ]]; }

rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null; }

show_log() { [[ -f $1 ]] && { echo "--- tail of $1" >&2; tail -n 20 "$1" >&2; }; return 0; }
