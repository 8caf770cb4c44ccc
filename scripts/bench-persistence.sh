#!/usr/bin/env bash
# The persistence figures of issue 4: Tandem's sticky table and replication
# (Go benchmarks and the pkg/replicate figures test) side by side with
# HAProxy's stick-table `peers` (Debian's haproxy, nbthread 1), in one run,
# on the loopback of a network namespace of its own.
#
# Usage: scripts/bench-persistence.sh [-o results.json] [--only tandem|haproxy]
#                                     [-n NETNS] [--keep]
# Env:   GO_COUNT      -count of the sticky benchmarks, medians [3]
#        HP_INSERT_N   entries fed into hp1 unpaced, hp2 watched [200000]
#        HP_LAG_RATE   paced feed for HAProxy's lag, entries/s [20000]
#        HP_LAG_SECS   seconds of paced feed [5]
#        HP_RESYNC_N   entries in hp1 before hp2 starts fresh [1000000]
#        HP_ROUNDS     fresh starts of hp2 (resync), median [3]
#        BENCH_NS      namespace name, as -n [tbpers]
#        TANDEM_SOURCE worktree: build the tests from the work tree, falling
#                      back to HEAD (git archive) when it does not build;
#                      head: always HEAD [worktree]
#
# Tandem (test binaries built first, run inside the namespace, so the
# replication figures' traffic is on its 127.0.0.1):
#   dataplane  -bench Sticky -benchmem -count GO_COUNT: lookup (wall ns/op,
#              the benchmark's own cpu-ns/op, allocs/op) and insert (Touch of
#              new keys into 1M entries); TestStickyMemoryPerEntry: heap
#              bytes per entry at 1M (IPv4, IPv6)
#   replicate  TANDEM_FIGURES=1 -run Figures: sustained = the highest offered
#              rate (250k..2M/s, one second each) the peer kept up with, and
#              the delivered rate there; capacity (publish as fast as the
#              stream drains); lag p99 at 20k new entries/s for 5 s (Publish
#              → applied on the peer); bulk of 1M entries to a fresh peer,
#              median of 3 (connected → all applied, and peer start →
#              BulkReceived)
# HAProxy: hp1 and hp2, peers section mypeers (hp1 127.0.0.1:10001, hp2
# 127.0.0.1:10002, local name by -L), backend bk with `stick-table type ip
# size 2m expire 10m peers mypeers store server_id`, stats socket level admin,
# nbthread 1. The feeder (`labtools hapeers feed`) pipelines `set table bk
# key IP data.server_id N` lines on one CLI connection in prompt mode and
# counts the answers; a watcher polls `show table` (the summary line,
# used:) on hp2 every 5 ms.
#   lag        HP_LAG_RATE entries/s for HP_LAG_SECS s into hp1: per entry,
#              hp1's CLI answer → counted in hp2's used: (p50/p99, ±5 ms poll)
#   insert     HP_INSERT_N entries as fast as hp1's CLI takes them: entries/s,
#              hp2 behind when the feed ended, time until it caught up
#   resync     hp1 restarted fresh and filled with HP_RESYNC_N entries (hp2
#              down; hp1's VmRSS before/after gives bytes per entry), then hp2
#              started fresh HP_ROUNDS times: its launch → used: = N (and CLI
#              up → N); below 1M the time is also scaled to 1M, marked so
# Prints the table (figure, goal, Tandem, HAProxy, ratio Tandem/HAProxy;
# `labtools persistreport`), the machine's uptime (load) before and after,
# and writes JSON with -o. Exit 0 when every figure was measured (a Tandem
# figure missing its goal is reported, not an error). Needs root and Go;
# installs haproxy and socat with scripts/deps.sh. Only processes this script started are stopped,
# by PID; the namespace is deleted on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

NS=${BENCH_NS:-tbpers}
ONLY=all
GO_COUNT=${GO_COUNT:-3}
HP_INSERT_N=${HP_INSERT_N:-200000}
HP_LAG_RATE=${HP_LAG_RATE:-20000}
HP_LAG_SECS=${HP_LAG_SECS:-5}
HP_RESYNC_N=${HP_RESYNC_N:-1000000}
HP_ROUNDS=${HP_ROUNDS:-3}
TANDEM_SOURCE=${TANDEM_SOURCE:-worktree}

BENCH=bench-persistence
# usage, die, log, num, record, stats, ..., nsx, listening, build_tandem, ...: lib/nsbench.sh
. "$ROOT/scripts/lib/nsbench.sh"
nsbench_args "$@"
[[ $ONLY =~ ^(all|tandem|haproxy)$ ]] || die "--only: tandem or haproxy"
[[ $TANDEM_SOURCE =~ ^(worktree|head)$ ]] || die "TANDEM_SOURCE: worktree or head"
num GO_COUNT 1 20
num HP_INSERT_N 1000 2000000
num HP_LAG_RATE 100 500000
num HP_LAG_SECS 1 60
num HP_RESYNC_N 1000 2000000
num HP_ROUNDS 1 20
command -v go >/dev/null || die "go is needed"
nsbench_init bench-persistence
bench_started
log "work dir $TMP"

nsbench_netns

# head_src: the committed HEAD (git archive) in TMP/src, once; SRC_DIR
# and TANDEM_SRC say so. Others edit the work tree concurrently: when it
# does not build, HEAD is measured instead, and the report says so.
head_src() {
    if [[ ! -d $TMP/src ]]; then
        mkdir -p "$TMP/src"
        git archive HEAD | tar -x -C "$TMP/src" || die "git archive HEAD failed"
    fi
    SRC_DIR=$TMP/src; TANDEM_SRC="HEAD $(git rev-parse --short HEAD)"
}
SRC_DIR=$ROOT; TANDEM_SRC="work tree at $(git rev-parse --short HEAD 2>/dev/null)"
[[ -z $(git status --porcelain -- . 2>/dev/null | grep -v '^??' || true) ]] ||
    TANDEM_SRC+=" with uncommitted changes"
[[ $TANDEM_SOURCE == head ]] && head_src
if ! build_labtools "$SRC_DIR"; then
    [[ $SRC_DIR == "$ROOT" ]] || die "HEAD does not build either"
    log "the work tree does not build; using HEAD"
    head_src
    build_labtools "$SRC_DIR" || die "HEAD does not build either"
fi

# ---------------------------------------------------------------- helper
hp() { nsx "$LABTOOLS" hapeers "$@"; }

# ---------------------------------------------------------------- Tandem
build_tests() { # build_tests DIR
    log "tandem: building test binaries in $1"
    (cd "$1" && go test -c -o "$TMP/dataplane.test" ./dataplane/ && go test -c -o "$TMP/replicate.test" ./pkg/replicate/)
}
run_tandem() {
    if ! build_tests "$SRC_DIR" 2>"$TMP/build.log"; then
        [[ $SRC_DIR == "$ROOT" ]] || die "HEAD does not build either"
        log "the work tree does not build ($(head -3 "$TMP/build.log" | tr '\n' ' ')); using HEAD"
        head_src
        build_tests "$SRC_DIR" || die "HEAD does not build either"
    fi
    log "tandem: measuring $TANDEM_SRC"
    log "tandem: sticky benchmarks (-count $GO_COUNT)"
    (cd "$SRC_DIR/dataplane" && nsx "$TMP/dataplane.test" -test.run XXX -test.bench Sticky -test.benchmem \
        -test.count "$GO_COUNT") >"$TMP/bench.txt" 2>&1 || log "sticky benchmarks exited non-zero (see $TMP/bench.txt)"
    grep -E '^Benchmark' "$TMP/bench.txt" >&2 || true
    log "tandem: TestStickyMemoryPerEntry"
    (cd "$SRC_DIR/dataplane" && nsx "$TMP/dataplane.test" -test.run 'TestStickyMemoryPerEntry$' -test.v) \
        >"$TMP/mem.txt" 2>&1 || log "memory test exited non-zero"
    grep -E 'bytes of heap' "$TMP/mem.txt" >&2 || true
    log "tandem: replication figures (TANDEM_FIGURES=1 -run Figures)"
    (cd "$SRC_DIR/pkg/replicate" && TANDEM_FIGURES=1 nsx "$TMP/replicate.test" -test.run Figures -test.v -test.timeout 10m) \
        >"$TMP/fig.txt" 2>&1 || log "figures test exited non-zero (a goal missed, or worse: see below)"
    grep -E 'FIGURE|FAIL|figures_test' "$TMP/fig.txt" >&2 || true
}

# ---------------------------------------------------------------- HAProxy
HP1=""; HP2=""
hp_conf() { # hp_conf N
    cat >"$TMP/hp$1.cfg" <<EOF
global
    nbthread 1
    maxconn 1000
    stats socket $TMP/hp$1.sock level admin
defaults
    mode tcp
    timeout connect 1s
    timeout client 30s
    timeout server 30s
peers mypeers
    peer hp1 127.0.0.1:10001
    peer hp2 127.0.0.1:10002
backend bk
    stick-table type ip size 2m expire 10m peers mypeers store server_id
    server s1 127.0.0.1:9
EOF
}
hp_start() { # hp_start N: launched in the foreground mode (-db), PID in HPn
    rm -f "$TMP/hp$1.sock"
    date +%s.%N >"$TMP/t0"
    ip netns exec "$NS" haproxy -f "$TMP/hp$1.cfg" -L "hp$1" -db >>"$TMP/hp$1.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid"); echo "$pid" >"$TMP/hp$1.pid"
    printf -v "HP$1" %s "$pid"
}
hp_wait_cli() { # hp_wait_cli N
    local i
    for i in $(seq 1 100); do
        hp used -sock "$TMP/hp$1.sock" -table bk >/dev/null 2>&1 && return 0
        kill -0 "$(cat "$TMP/hp$1.pid")" 2>/dev/null || die "hp$1 exited: $(tail -5 "$TMP/hp$1.log")"
        sleep 0.1
    done
    die "hp$1's CLI did not come up"
}
hp_stop() { # hp_stop N
    local pid; pid=$(cat "$TMP/hp$1.pid")
    stop_pid "$pid"; forget_pid "$pid"
}

run_haproxy() {
    scripts/deps.sh haproxy socat >&2 || die "deps.sh haproxy socat failed"
    HPVER=$(haproxy -v 2>/dev/null | sed -n 1p)
    log "haproxy: $HPVER"
    hp_conf 1; hp_conf 2
    haproxy -c -f "$TMP/hp1.cfg" >/dev/null 2>&1 || die "haproxy rejects the config: $(haproxy -c -f "$TMP/hp1.cfg" 2>&1 | tail -3)"

    log "haproxy: hp1 and hp2 up; lag at $HP_LAG_RATE/s for $HP_LAG_SECS s"
    hp_start 1; hp_wait_cli 1
    hp_start 2; hp_wait_cli 2
    sleep 1 # the peers connect
    local n=$((HP_LAG_RATE * HP_LAG_SECS))
    hp feed -sock "$TMP/hp1.sock" -peer "$TMP/hp2.sock" -table bk -first 0 -count "$n" \
        -rate "$HP_LAG_RATE" -pid "$HP1" >"$TMP/hp-lag.json" || die "lag feed failed"
    cat "$TMP/hp-lag.json" >&2
    log "haproxy: insert $HP_INSERT_N entries unpaced, hp2 watched"
    hp feed -sock "$TMP/hp1.sock" -peer "$TMP/hp2.sock" -table bk -first "$n" -count "$HP_INSERT_N" \
        -pid "$HP1" >"$TMP/hp-insert.json" || die "insert feed failed"
    cat "$TMP/hp-insert.json" >&2
    hp_stop 2; hp_stop 1

    log "haproxy: resync: hp1 fresh, filled with $HP_RESYNC_N entries (hp2 down)"
    hp_start 1; hp_wait_cli 1
    local hp1_t0=$SECONDS
    sleep 0.5
    local r0 r1
    r0=$(rss_kib "$HP1")
    hp feed -sock "$TMP/hp1.sock" -table bk -first 0 -count "$HP_RESYNC_N" -pid "$HP1" \
        >"$TMP/hp-fill.json" || die "fill failed"
    cat "$TMP/hp-fill.json" >&2
    r1=$(rss_kib "$HP1")
    printf '{"before_kib": %d, "after_kib": %d, "entries": %d, "bytes_per_entry": %s}\n' "$r0" "$r1" "$HP_RESYNC_N" \
        "$(awk -v a="$r0" -v b="$r1" -v n="$HP_RESYNC_N" 'BEGIN{printf "%.1f", (b-a)*1024/n}')" >"$TMP/hp-rss.json"
    # a fresh hp1 waits up to 5 s for a resync of its own (peers'
    # PEER_RESYNC_TIMEOUT); it would then ask hp2 first, so let that pass
    while (( SECONDS - hp1_t0 < 7 )); do sleep 0.5; done
    local i w
    echo '[' >"$TMP/hp-resync.json"
    for i in $(seq 1 "$HP_ROUNDS"); do
        rm -f "$TMP/hp2.sock" "$TMP/t0"
        ip netns exec "$NS" "$LABTOOLS" hapeers wait -sock "$TMP/hp2.sock" -table bk -count "$HP_RESYNC_N" \
            -t0file "$TMP/t0" -pidfile "$TMP/hp2.pid" -timeout 120s >"$TMP/hp-resync-$i.json" &
        w=$!; PIDS+=("$w")
        sleep 0.3 # the waiter is polling for hp2's socket
        hp_start 2
        wait "$w" || die "resync round $i: hp2 did not reach $HP_RESYNC_N entries"
        forget_pid "$w"
        log "resync round $i: $(cat "$TMP/hp-resync-$i.json")"
        [[ $i -gt 1 ]] && echo ',' >>"$TMP/hp-resync.json"
        cat "$TMP/hp-resync-$i.json" >>"$TMP/hp-resync.json"
        hp_stop 2
    done
    echo ']' >>"$TMP/hp-resync.json"
    hp_stop 1
}

HPVER=""; TANDEM_SRC=""
[[ $ONLY == haproxy ]] || run_tandem
[[ $ONLY == tandem ]] || run_haproxy
UPTIME_AFTER=$(uptime)

args=(-up0="$UPTIME_BEFORE" -up1="$UPTIME_AFTER" -n="$HP_RESYNC_N" -hpver="$HPVER" -src="$TANDEM_SRC" -out="$OUT")
if [[ $ONLY != haproxy ]]; then
    args+=(-bench="$TMP/bench.txt" -mem="$TMP/mem.txt" -fig="$TMP/fig.txt" -want-tandem)
fi
if [[ $ONLY != tandem ]]; then
    args+=(-lag="$TMP/hp-lag.json" -insert="$TMP/hp-insert.json" -fill="$TMP/hp-fill.json"
           -resync="$TMP/hp-resync.json" -rss="$TMP/hp-rss.json" -want-haproxy)
fi
"$LABTOOLS" persistreport "${args[@]}"
[[ -n $OUT ]] && log "JSON written to $OUT"
exit 0
