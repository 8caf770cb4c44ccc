#!/usr/bin/env bash
# Sessions across a failover (issue 11's figure): SESSIONS long-lived TCP
# sessions (a line every 100 ms each, waiting for its echo, like an IM or
# LDAP session that stays open) from the client through the VIP to two echo
# servers on the inside subnet (scripts/lab.sh up --inside), and a cable
# pull of the master (or a switchover) in the middle. Several setups in the
# same run, each in a fresh lab:
#
#   keepalived     keepalived VRRPv3, 50 ms adverts, both VIPs in one
#                  instance + nftables DNAT (numgen inc to srv1/srv2) in lb1
#                  and lb2 + conntrackd FTFW over the dedicated cable hb0,
#                  its notify script committing the external cache on
#                  MASTER (the conntrack-tools manual's primary-backup.sh)
#   keepalived100  the same at 100 ms adverts
#   nosync         keepalived 50 ms + DNAT without conntrackd (not in the
#                  default list)
#   proxy          Tandem, cluster in mode proxy (the default), adverts 50 ms
#   nat            Tandem, mode nat, nat.return gateway, algorithm maglev,
#                  VIPs 198.18.0.100/24 and 198.19.1.1/24 dev eth1, second
#                  heartbeat path on hb0: cable pulls, `tandem switchover`
#                  (alternating), and pulls right after the backup was
#                  restarted with an empty conntrack table (once its status
#                  says IN SYNC). Skipped with a message when `tandem
#                  validate` refuses mode: nat.
#   nat-nohb       the nat pair without the second heartbeat path: pulls
#
# Usage: scripts/bench-sessions.sh [-o results.md] [-p PREFIX] [--keep]
# Env:   PARTS      comma list of the setups above
#                   [keepalived,keepalived100,proxy,nat,nat-nohb]
#        TRIALS     pulls per setup [10]; SWITCHOVERS, RESTARTS for nat [TRIALS]
#        SESSIONS   sessions per trial [200]
#        HOLD       seconds measured after the pull or switchover [4]
#        KA_RT_PRIORITY  keepalived's vrrp_rt_priority [0: none, as packaged];
#                   Tandem's default node.rt_priority is 10, conntrackd is
#                   real-time by default. On a busy 2-core VM keepalived's
#                   VRRP child at 10 was killed by RLIMIT_RTTIME.
#        TANDEM_RT_PRIORITY  node.rt_priority of the Tandem nodes [the
#                   product's default]
#        TANDEM_BIN tandem binary [built from ./cmd/tandem into a temp dir]
#
# One trial: `labtools sessions` in the client's namespace until every
# session has answered once, 1 s steady, pull lb1's cable (lab.sh pull lb1),
# HOLD s, stop the sessions (they count what they saw until then), plug lb1
# back, wait for lb1 to be master again alone, settle, next trial. A
# session survived when it was never reset or errored and was not left
# waiting for an answer for over 1 s; a gap is the time between two
# answered lines (100 ms when nothing happens), a stall a gap over 150 ms.
# Prints one Markdown table per setup (survived, stalled, median and
# longest gap per trial), with the command and date; -o writes it to a
# file too. Needs root, iproute2, nftables, conntrack, conntrackd,
# keepalived (scripts/deps.sh conntrack conntrackd) and Go. Every wait is
# bounded; only processes this script started are stopped, by PID; the lab
# (prefix bsNNNNN by default, unique per run) is torn down on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# build_tandem, show_log, and through it stop_pid, forget_pid, wait_for;
# sourced first: its defaults (OUT, KEEP, usage, die, log) are set again
# below.
BENCH=bench-sessions
NS="" # nsbench.sh's namespace helpers are not used here
. "$ROOT/scripts/lib/nsbench.sh"

OUT=""
KEEP=0
P=${TANDEM_LAB_PREFIX:-bs$(($$ % 100000))}
PARTS=${PARTS:-keepalived,keepalived100,proxy,nat,nat-nohb}
TRIALS=${TRIALS:-10}
SWITCHOVERS=${SWITCHOVERS:-$TRIALS}
RESTARTS=${RESTARTS:-$TRIALS}
SESSIONS=${SESSIONS:-200}
HOLD=${HOLD:-4}
KA_RT_PRIORITY=${KA_RT_PRIORITY:-0}
VIP=198.18.0.100
IVIP=198.19.1.1
PORT=5222
CMDLINE="$0 $*"

usage() { sed -n '/^# Usage:/,/^# One trial:/{/^# One trial:/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
die() { echo "bench-sessions: $*" >&2; exit 1; }
log() { echo "bench-sessions: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case $1 in
        -o) OUT=${2:-}; shift 2 || usage ;;
        -p) P=${2:-}; shift 2 || usage ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage ;;
        *) usage ;;
    esac
done
for v in TRIALS SWITCHOVERS RESTARTS; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -le 100 ]] || die "$v must be 0..100"
done
[[ $SESSIONS =~ ^[0-9]+$ && $SESSIONS -ge 1 && $SESSIONS -le 2000 ]] || die "SESSIONS must be 1..2000"
[[ $HOLD =~ ^[0-9]+$ && $HOLD -ge 1 && $HOLD -le 60 ]] || die "HOLD must be 1..60 (seconds)"
[[ $KA_RT_PRIORITY =~ ^[0-9]+$ && $KA_RT_PRIORITY -le 99 ]] || die "KA_RT_PRIORITY must be 0..99"
IFS=, read -ra PART_LIST <<<"$PARTS"
for part in "${PART_LIST[@]}"; do
    case $part in keepalived|keepalived100|nosync|proxy|nat|nat-nohb) ;; *) die "unknown part '$part'" ;; esac
done
[[ $(id -u) -eq 0 ]] || die "must run as root"
for c in ip nft jq; do command -v $c >/dev/null || die "$c missing: run scripts/deps.sh nftables jq"; done

LAB=("$ROOT/scripts/lab.sh" -p "$P")
TMP=$(mktemp -d /tmp/bench-sessions.XXXXXX)
PIDS=()
LAB_MADE=0


cleanup() {
    local rc=$? p
    set +e
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    [[ $LAB_MADE -eq 1 ]] && "${LAB[@]}" down >/dev/null 2>&1
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

LABTOOLS=$TMP/labtools
log "building labtools"
go build -o "$LABTOOLS" ./scripts/labtools || die "cannot build scripts/labtools"
TANDEM=""
need_tandem() { [[ -n $TANDEM ]] || build_tandem; }

# ---- the lab ----------------------------------------------------------------

node_addr() { case $1 in lb1) echo 198.18.0.11 ;; lb2) echo 198.18.0.12 ;; esac; }
hb_addr() { case $1 in lb1) echo 198.19.0.11 ;; lb2) echo 198.19.0.12 ;; esac; }
inside_addr() { case $1 in lb1) echo 198.19.1.11 ;; lb2) echo 198.19.1.12 ;; esac; }
node_prio() { case $1 in lb1) echo 150 ;; lb2) echo 100 ;; esac; }
peer_of() { case $1 in lb1) echo lb2 ;; lb2) echo lb1 ;; esac; }

# SETUP: PIDs of the current setup's daemons and servers
SETUP=()
start_bg() { # start_bg LOG CMD...: CMD in the background, tracked
    local logf=$1; shift
    "$@" >"$logf" 2>&1 &
    PIDS+=($!)
    SETUP+=($!)
}

lab_up() {
    "${LAB[@]}" up --inside >/dev/null 2>"$SD/lab-up.log" || { show_log "$SD/lab-up.log"; return 1; }
    LAB_MADE=1
    local s
    for s in srv1 srv2; do
        start_bg "$SD/echo-$s.log" ip netns exec "$P-$s" "$LABTOOLS" echo -listen "0.0.0.0:$PORT"
    done
    # address events of both boxes, timestamped by netlink: the take-overs
    for s in lb1 lb2; do
        rm -f "$SD/vip-$s.jsonl"
        start_bg "$SD/vipwatch-$s.log" ip netns exec "$P-$s" "$LABTOOLS" vipwatch -box "$s" \
            -out "$SD/vip-$s.jsonl"
    done
    wait_for 5 grep -qs ready "$SD/vip-lb1.jsonl" "$SD/vip-lb2.jsonl" || { log "vipwatch did not start"; return 1; }
    # the switch's port events, timestamped: when a pull took effect
    start_bg "$SD/links.log" ip -n "$P-sw" -ts monitor link
}

teardown() {
    local p
    for p in "${SETUP[@]}"; do stop_pid "$p"; forget_pid "$p"; done
    SETUP=()
    "${LAB[@]}" down >/dev/null 2>&1 || true
    LAB_MADE=0
}

holds() { ip -n "$P-$1" -br addr show dev eth0 2>/dev/null | grep -qw "$VIP/24"; }
holds_alone() { holds "$1" && ! holds "$(peer_of "$1")"; }
# the session service answers through the VIP: 4 sessions for 400 ms
serves() {
    ip netns exec "$P-client" "$LABTOOLS" sessions -target "$VIP:$PORT" -n 4 \
        -duration 400ms 2>/dev/null | jq -e '.survived == 4' >/dev/null
}

# ---- keepalived + nftables DNAT + conntrackd ---------------------------------

dnat_rules() { # dnat_rules BOX
    ip netns exec "$P-$1" nft -f - <<NFT
table ip tbsessions {
    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr $VIP tcp dport $PORT dnat to numgen inc mod 2 map { 0 : 198.19.1.21, 1 : 198.19.1.22 }
    }
}
NFT
}

conntrackd_conf() { # conntrackd_conf BOX DIR
    local n=$1 dir=$2
    cat <<CONF
Sync {
    Mode FTFW {
    }
    UDP {
        IPv4_address $(hb_addr "$n")
        IPv4_Destination_Address $(hb_addr "$(peer_of "$n")")
        Port 3780
        Interface hb0
        SndSocketBuffer 1249280
        RcvSocketBuffer 1249280
        Checksum on
    }
}
General {
    Systemd off
    HashSize 32768
    HashLimit 131072
    LogFile $dir/conntrackd.log
    Syslog off
    LockFile $dir/conntrackd.lock
    UNIX {
        Path $dir/conntrackd.ctl
    }
    NetlinkBufferSize 2097152
    NetlinkBufferSizeMaxGrowth 8388608
    Filter From Userspace {
        Protocol Accept {
            TCP
        }
        # the box's own traffic; the forwarded flows to the VIP are synced
        Address Ignore {
            IPv4_address 127.0.0.1
            IPv4_address $(node_addr "$n")
            IPv4_address $(hb_addr "$n")
            IPv4_address $(inside_addr "$n")
        }
    }
}
CONF
}

# The notify script: the conntrack-tools manual's primary-backup.sh (its
# doc/sync/primary-backup.sh), with this box's config and a log of when
# each step ran.
notify_script() { # notify_script DIR
    cat <<'SH'
#!/bin/sh
# $1: primary|backup|fault. Runs in the box's namespace (keepalived's).
D=$(dirname "$0")
C="/usr/sbin/conntrackd -C $D/conntrackd.conf"
stamp() { echo "$(date -u +%H:%M:%S.%N) $*" >>"$D/notify.log"; }
stamp "$1 begin"
case "$1" in
  primary)
    $C -c || stamp "ERROR: conntrackd -c"   # commit the external cache
    stamp "committed"
    $C -f || stamp "ERROR: conntrackd -f"   # flush internal and external caches
    $C -R || stamp "ERROR: conntrackd -R"   # resync the internal cache with the kernel
    $C -B || stamp "ERROR: conntrackd -B"   # bulk update to the backup
    ;;
  backup)
    $C -t || stamp "ERROR: conntrackd -t"   # shorten kernel timers (zombie entries)
    $C -n || stamp "ERROR: conntrackd -n"   # resync request to the primary
    ;;
  fault)
    $C -t || stamp "ERROR: conntrackd -t"
    ;;
esac
stamp "$1 end"
SH
}

start_keepalived() { # start_keepalived ADVERT_SECONDS SYNC(0|1)
    local adv=$1 sync=$2 n dir notify rt=""
    # optional real-time scheduling (Tandem's default is SCHED_RR 10)
    [[ $KA_RT_PRIORITY -gt 0 ]] && rt="    vrrp_rt_priority $KA_RT_PRIORITY"
    command -v keepalived >/dev/null || { log "keepalived missing: run scripts/deps.sh"; return 1; }
    if [[ $sync -eq 1 ]]; then
        command -v conntrackd >/dev/null || { log "conntrackd missing: run scripts/deps.sh conntrackd"; return 1; }
    fi
    for n in lb1 lb2; do
        dnat_rules "$n" || { log "nft DNAT rules failed in $n"; return 1; }
        dir=$SD/ka-$n
        rm -rf "$dir"; mkdir -p "$dir"
        notify=""
        if [[ $sync -eq 1 ]]; then
            conntrackd_conf "$n" "$dir" >"$dir/conntrackd.conf"
            notify_script >"$dir/notify.sh"
            chmod 700 "$dir/notify.sh"
            start_bg "$dir/conntrackd.out" ip netns exec "$P-$n" conntrackd -C "$dir/conntrackd.conf"
            notify="    notify_master \"$dir/notify.sh primary\"
    notify_backup \"$dir/notify.sh backup\"
    notify_fault \"$dir/notify.sh fault\""
        fi
        cat >"$dir/keepalived.conf" <<CONF
global_defs {
    router_id $n
    vrrp_version 3
    script_user root
    enable_script_security
$rt
}
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority $(node_prio "$n")
    advert_int $adv
    garp_master_delay 0
    garp_master_repeat 3
    virtual_ipaddress {
        $VIP/24 dev eth0
        $IVIP/24 dev eth1
    }
$notify
}
CONF
        start_bg "$SD/keepalived-$n.log" ip netns exec "$P-$n" keepalived -n -l -D -P \
            -f "$dir/keepalived.conf" -p "$dir/keepalived.pid" -r "$dir/vrrp.pid"
    done
}

# ---- Tandem -----------------------------------------------------------------

# tandem_conf BOX MODE HB: a pair node with cluster `im` on VIP:PORT to
# srv1 and srv2; MODE proxy or nat; HB 1 adds hb0 as a heartbeat path.
tandem_conf() {
    local n=$1 mode=$2 hb=$3 dir=$SD/tandem-$1 paths="" vips cluster
    if [[ $hb -eq 1 ]]; then
        paths="  heartbeat_paths: [{bind: \"$(hb_addr "$n"):7946\", peer: \"$(hb_addr "$(peer_of "$n")"):7946\"}]"
    fi
    if [[ $mode == nat ]]; then
        vips="[\"$VIP/24\", \"$IVIP/24 dev eth1\"]"
        cluster="    mode: nat
    nat: {return: gateway}
    algorithm: maglev"
    else
        vips="[$VIP/24]"
        cluster="    algorithm: round_robin"
    fi
    cat <<CONF
node:
  name: $n
  api_socket: $dir/tandem.sock
${TANDEM_RT_PRIORITY:+  rt_priority: $TANDEM_RT_PRIORITY}
  log_level: info
cluster:
  bind: $(node_addr "$n"):7946
  peers: [$(node_addr "$(peer_of "$n")"):7946]
  secret_file: $TMP/cluster.key
$paths
failover:
  interface: eth0
  priority: $(node_prio "$n")
  preempt: true
  advert_interval: 50ms
  vips: $vips
  garp:
    count: 3
    interval: 100ms
clusters:
  - name: im
    vip: $VIP
    port: $PORT
    protocol: tcp
$cluster
    servers:
      - {name: srv1, address: 198.19.1.21:$PORT}
      - {name: srv2, address: 198.19.1.22:$PORT}
CONF
}

# tandem_prepare MODE HB: writes and validates both configs; 3 when
# validate refuses them (the reason in $SD/validate-lb1.log).
tandem_prepare() {
    local mode=$1 hb=$2 n
    need_tandem || return 1
    [[ -s $TMP/cluster.key ]] || { "$TANDEM" keygen >"$TMP/cluster.key" && chmod 600 "$TMP/cluster.key"; } || return 1
    for n in lb1 lb2; do
        mkdir -p "$SD/tandem-$n"
        tandem_conf "$n" "$mode" "$hb" >"$SD/tandem-$n/tandem.yaml"
        if ! "$TANDEM" validate --config "$SD/tandem-$n/tandem.yaml" >"$SD/validate-$n.log" 2>&1; then
            return 3
        fi
    done
}

declare -A TPID=()
start_tandem_node() { # start_tandem_node BOX
    start_bg "$SD/tandem-$1.log" ip netns exec "$P-$1" "$TANDEM" run --config "$SD/tandem-$1/tandem.yaml"
    TPID[$1]=$!
}
start_tandem() { start_tandem_node lb1; start_tandem_node lb2; }

tstatus() { "$TANDEM" status --json --socket "$SD/tandem-$1/tandem.sock" 2>/dev/null; }
tstate_is() { tstatus "$1" | jq -e --arg s "$2" '.state == $s' >/dev/null; }
# in_sync BOX: BOX sees a live peer, its persistence (when enabled) is IN
# SYNC and so is its conntrack replication (CONTRACT.md's
# persistence.conntrack_in_sync; a status without the field passes, with a
# warning in the log)
in_sync() {
    local st
    st=$(tstatus "$1") || return 1
    if ! jq -e '.persistence | has("conntrack_in_sync")' >/dev/null <<<"$st" && [[ -z ${WARNED_CT:-} ]]; then
        WARNED_CT=1
        log "warning: status has no persistence.conntrack_in_sync; waiting for persistence IN SYNC only"
    fi
    jq -e '((.persistence.enabled | not) or .persistence.state == "IN SYNC")
        and (.persistence.conntrack_in_sync // true)
        and (.peers | length > 0) and .peers[0].alive' >/dev/null <<<"$st"
}
tandem_settled() { # tandem_settled MASTER
    tstate_is "$1" MASTER && tstate_is "$(peer_of "$1")" BACKUP && holds_alone "$1"
}

# ---- one trial --------------------------------------------------------------

gone() { ! kill -0 "$1" 2>/dev/null; }

# takeover BOX T0: TK, the ms from T0 (ns since the epoch) to BOX's first
# add of the VIP after it (vipwatch), and ADDED_AT (ns); TK is "-" and
# ADDED_AT empty when there was none within 5 s.
takeover() {
    TK=- ADDED_AT=
    wait_for 5 vip_added_since "$1" "$2" || return 0
    TK=$(( (ADDED_AT - $2) / 1000000 ))
}
port_down_since() { # port_down_since BOX T: sets DOWN_AT, the first admin down of p-BOX after T
    local at t
    while read -r at; do
        t=$(date -d "$at" +%s%N)
        if (( t >= $2 )); then DOWN_AT=$t; return 0; fi
    done < <(sed -n "s/^\[\([^]]*\)\] [0-9]*: p-$1@[^:]*: <BROADCAST,MULTICAST> .*/\1/p" "$SD/links.log")
    return 1
}
vip_added_since() { # sets ADDED_AT
    local at t
    while read -r at; do
        t=$(date -d "$at" +%s%N)
        if (( t >= $2 )); then ADDED_AT=$t; return 0; fi
    done < <(jq -r --arg a "$VIP/24" 'select(.op == "add" and .addr == $a) | .at' "$SD/vip-$1.jsonl" 2>/dev/null)
    return 1
}

# sessions_start ID: the sessions client; waits until every session has
# answered once. Sets SESS (its PID) and SUM (its summary file). 2 (and
# the client stopped) when some failed before any fault: no measurement.
sessions_start() {
    local id=$1
    SUM=$TMP/$id.json
    rm -f "$TMP/$id.ready" "$TMP/$id.stop"
    ip netns exec "$P-client" "$LABTOOLS" sessions -target "$VIP:$PORT" -n "$SESSIONS" \
        -duration 180s -ready "$TMP/$id.ready" -stop "$TMP/$id.stop" >"$SUM" 2>"$TMP/$id.log" &
    SESS=$!
    PIDS+=($SESS)
    if ! wait_for 20 test -e "$TMP/$id.ready"; then
        log "$id: the sessions did not all answer within 20 s"
        sessions_stop "$id"
        return 1
    fi
    local answered failed
    read -r answered failed <"$TMP/$id.ready"
    if (( failed > 0 )); then
        sessions_stop "$id"
        log "$id: $failed of $SESSIONS sessions failed before the fault ($(jq -c '{connected, errors}' "$SUM"); lb1 holds the VIP: $(holds lb1 && echo yes || echo no), lb2: $(holds lb2 && echo yes || echo no))"
        return 2
    fi
    sleep 1
}

# sessions_stop ID: ends the client; its summary is then in SUM.
sessions_stop() {
    touch "$TMP/$1.stop"
    wait_for 10 gone "$SESS" || log "$1: the sessions client did not stop in 10 s"
    stop_pid "$SESS"; forget_pid "$SESS"
    jq -e .sessions "$SUM" >/dev/null 2>&1 || { log "$1: no summary"; show_log "$TMP/$1.log"; return 1; }
}

# record SETUP KIND TRIAL TAKEOVER_MS: one line of $TMP/SETUP.rows
record() {
    local s=$1 kind=$2 i=$3 tk=$4 note=${5:-}
    jq -r --arg k "$kind" --arg i "$i" --arg tk "$tk" --arg note "$note" \
        '[$k, $i, .survived, .sessions, .stalled, .gap_p50_ms, .gap_max_ms, $tk,
          ([((.errors // {}) | to_entries | map("\(.key) \(.value)") | join(", ")), $note]
           | map(select(. != "")) | join("; ")) ] | @tsv' \
        "$SUM" >>"$TMP/$s.rows"
    log "$s $kind $i: $(jq -c '{survived, sessions, stalled, gap_p50_ms, gap_max_ms, errors, first_failure}' "$SUM"), take-over ${tk} ms${note:+, $note}$(stall_ends)"
}

# stall_ends: where the stalled sessions' longest gaps ended, in ms from
# the fault (T0): a stall of the fault ends a few hundred ms after it; one
# long before or after it is the machine's (times of day, so the offset is
# taken modulo a day: a run across midnight still reads right)
stall_ends() {
    local t0ms=$((T0 / 1000000))
    jq -r --argjson t0 "$t0ms" '
        [.stall_end_first, .stall_end_p50, .stall_end_last] | map(select(. != null)) |
        if length == 0 then "" else
          ", stalls ended at " + (map(
            (capture("T(?<h>[0-9]+):(?<m>[0-9]+):(?<s>[0-9.]+)Z") | ((.h|tonumber)*3600000 + (.m|tonumber)*60000 + ((.s|tonumber)*1000)))
          ) | map((floor - ($t0 % 86400000) + 129600000) % 86400000 - 43200000 | tostring) | join("/")) + " ms from the fault (first/median/last)"
        end' "$SUM"
}

# commit_lag BOX: with conntrackd, "commit +N ms": when BOX's notify
# script had committed the external cache, after the VIP was added
# (ADDED_AT); connections that retransmit in between are picked up as new
# flows and numgen sends half of them to the other server (RST)
commit_lag() {
    local f=$SD/ka-$1/notify.log
    [[ -n $ADDED_AT && -f $f ]] || return 0
    if wait_for 3 committed_since "$f" "$ADDED_AT"; then
        echo "commit +$(( (COMMITTED_AT - ADDED_AT) / 1000000 )) ms"
    else
        echo "no commit within 3 s"
    fi
}
committed_since() { # sets COMMITTED_AT; notify.log stamps are UTC times of day
    local hms t
    while read -r hms _; do
        t=$(date -u -d "$(date -u -d "@$(( $2 / 1000000000 ))" +%F) $hms" +%s%N)
        if (( t >= $2 - 1000000000 )); then COMMITTED_AT=$t; return 0; fi
    done < <(grep ' committed$' "$1")
    return 1
}

# trial SETUP KIND I MASTER FAULT [PREP]: the sessions through MASTER;
# PREP ID (if any) once they all answer, FAULT MASTER, HOLD s measured,
# the sessions stopped and the row recorded. The caller restores.
trial() {
    local s=$1 kind=$2 i=$3 m=$4 fault=$5 prep=${6:-} id="$1-$2-$3" note attempt rc
    # a start where sessions failed before the fault is retried once
    for attempt in 1 2; do
        rc=0
        sessions_start "$id" || rc=$?
        [[ $rc -eq 2 ]] || break
        sleep 2
    done
    [[ $rc -eq 0 ]] || return 1
    if [[ -n $prep ]] && ! "$prep" "$id"; then sessions_stop "$id"; return 1; fi
    # from the port going down (`ip monitor` in the switch; `lab.sh pull`
    # may take tens of ms on a busy machine), or the switchover command
    T0=$(date +%s%N)
    "$fault" "$m" || { log "$id: $fault $m failed"; sessions_stop "$id"; return 1; }
    if [[ $fault == pull ]] && wait_for 2 port_down_since "$m" "$T0"; then T0=$DOWN_AT; fi
    takeover "$(peer_of "$m")" "$T0"
    note=$(commit_lag "$(peer_of "$m")")
    sleep "$HOLD"
    sessions_stop "$id" || return 1
    record "$s" "$kind" "$i" "$TK" "$note"
}

# stably FN BOX: FN BOX holds now and still 1 s later (a pair that flaps
# under load passes a single look)
stably() { "$@" && sleep 1 && "$@"; }

# the faults
pull() { "${LAB[@]}" pull "$1"; }
switchover() { "$TANDEM" switchover --socket "$SD/tandem-$1/tandem.sock" >>"$SD/switchover.log" 2>&1; }

# pulls SETUP KIND SETTLED [PREP]: TRIALS pulls of lb1, each plugged back
# and lb1 master alone again (SETTLED lb1) before the next
pulls() {
    local s=$1 kind=$2 settled=$3 prep=${4:-} i
    for i in $(seq 1 "$TRIALS"); do
        wait_for 30 stably "$settled" lb1 || { log "$s $kind $i: lb1 is not master alone (for 1 s) before the pull"; return 1; }
        trial "$s" "$kind" "$i" lb1 pull "$prep" || return 1
        "${LAB[@]}" plug lb1
        # Tandem's link hold-down may delay the preempt by up to 8 s
        wait_for 30 "$settled" lb1 || { log "$s $kind $i: lb1 did not take the VIPs back alone within 30 s"; return 1; }
        sleep 1.5
    done
}

ka_settled() { holds_alone "$1"; }

# ---- the setups -------------------------------------------------------------

declare -A RESULT=() TITLE=() LOAD=()

run_keepalived() { # run_keepalived SETUP ADVERT SYNC
    local s=$1 adv=$2 sync=$3 i
    lab_up || return 1
    start_keepalived "$adv" "$sync" || return 1
    wait_for 15 holds_alone lb1 || { log "$s: lb1 did not take the VIPs"; show_log "$SD/keepalived-lb1.log"; return 1; }
    wait_for 10 serves || { log "$s: the sessions service does not answer through $VIP"; return 1; }
    pulls "$s" pull ka_settled
}

run_tandem_up() { # run_tandem_up SETUP MODE HB
    local s=$1 rc=0
    lab_up || return 1
    tandem_prepare "$2" "$3" || rc=$?
    if [[ $rc -eq 3 ]]; then
        log "SKIP $s: tandem validate refuses the $2 config:"
        sed 's/^/    /' "$SD/validate-lb1.log" >&2
        return 3
    fi
    [[ $rc -eq 0 ]] || return 1
    start_tandem
    wait_for 20 tandem_settled lb1 || { log "$s: lb1 not MASTER alone within 20 s"; show_log "$SD/tandem-lb1.log"; return 1; }
    wait_for 10 serves || { log "$s: the sessions service does not answer through $VIP"; return 1; }
}

run_proxy() {
    local s=proxy i
    run_tandem_up "$s" proxy 0 || return
    pulls "$s" pull tandem_settled
}

# restart_backup ID: lb2 (the backup) restarted with an empty conntrack
# table, until it is BACKUP and lb1 IN SYNC with it
restart_backup() {
    stop_pid "${TPID[lb2]}"; forget_pid "${TPID[lb2]}"
    ip netns exec "$P-lb2" conntrack -F >/dev/null 2>&1 || true
    start_tandem_node lb2
    wait_for 30 restarted_in_sync || { log "$1: lb2 not BACKUP and IN SYNC within 30 s of its restart"; return 1; }
}
# (lb2's own view counts: lb1's IN SYNC may still be the one from before
# the restart; lb2 holds while its bulk is arriving)
restarted_in_sync() {
    tstate_is lb2 BACKUP && in_sync lb2 && in_sync lb1 &&
        jq -e '(.holds // []) | length == 0' >/dev/null <<<"$(tstatus lb2)"
}

run_nat() { # run_nat SETUP HB
    local s=$1 hb=$2 i
    run_tandem_up "$s" nat "$hb" || return
    pulls "$s" pull tandem_settled || return 1
    [[ $hb -eq 1 ]] || return 0
    # switchovers, alternating: the old master stays backup
    local m=lb1
    for i in $(seq 1 "$SWITCHOVERS"); do
        wait_for 30 in_sync "$m" || { log "$s switchover $i: $m not IN SYNC within 30 s"; return 1; }
        trial "$s" switchover "$i" "$m" switchover || return 1
        m=$(peer_of "$m")
        wait_for 10 stably tandem_settled "$m" || { log "$s switchover $i: $m not master alone"; return 1; }
    done
    # back to lb1 before the restarts
    if [[ $m == lb2 ]]; then
        wait_for 30 in_sync lb2 && switchover lb2 || { log "$s: cannot hand back to lb1"; return 1; }
    fi
    TRIALS=$RESTARTS pulls "$s" restart+pull tandem_settled restart_backup
}

TITLE[keepalived]="keepalived VRRPv3 50 ms + nftables DNAT + conntrackd (FTFW over hb0)"
TITLE[keepalived100]="keepalived VRRPv3 100 ms + nftables DNAT + conntrackd (FTFW over hb0)"
TITLE[nosync]="keepalived VRRPv3 50 ms + nftables DNAT, no conntrackd"
TITLE[proxy]="Tandem, mode proxy (adverts 50 ms)"
TITLE[nat]="Tandem, mode nat (gateway, maglev), second heartbeat path on hb0"
TITLE[nat-nohb]="Tandem, mode nat (gateway, maglev), no second heartbeat path"

run_part() {
    case $1 in
        keepalived) run_keepalived "$1" 0.05 1 ;;
        keepalived100) run_keepalived "$1" 0.1 1 ;;
        nosync) run_keepalived "$1" 0.05 0 ;;
        proxy) run_proxy ;;
        nat) run_nat nat 1 ;;
        nat-nohb) run_nat nat-nohb 0 ;;
    esac
}

# ---- report -----------------------------------------------------------------

# table SETUP: Markdown, one row per trial and a summary row per kind
# (survived: trials where all survived, and the fewest; the others:
# medians over the trials, and the longest gap of all)
table() {
    local s=$1
    echo "#### ${TITLE[$s]}"
    echo
    echo "${LOAD[$s]:-}"
    echo
    echo "| trial | survived | stalled (gap > 150 ms) | median longest gap (ms) | longest gap (ms) | take-over (ms) | failures, notes |"
    echo "|---|---|---|---|---|---|---|"
    awk -F'\t' '
    function num(v) { return (v == "" || v == "-") ? "–" : sprintf("%.0f", v) }
    { printf "| %s %s | %d / %d | %d | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5,
          ($3 > 0 ? num($6) : "–"), ($3 > 0 ? num($7) : "–"), num($8), ($9 == "" ? "–" : $9) }' "$TMP/$s.rows"
    awk -F'\t' '
    function med(a, n,    i, j, t) {
        if (n == 0) return "–"
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return sprintf("%.0f", a[int((n + 1) / 2)])
    }
    {
        k = $1; if (!(k in n)) order[++nk] = k
        n[k]++; if ($3 == $4) all[k]++
        if (!(k in few) || $3 < few[k]) few[k] = $3
        sess[k] = $4; stl[k, n[k]] = $5
        if ($3 > 0) { gm[k, ++ng[k]] = $6; if ($7 > mx[k]) mx[k] = $7 }
        if ($8 != "-") tko[k, ++nt[k]] = $8
    }
    END {
        for (j = 1; j <= nk; j++) {
            k = order[j]
            delete a; for (i = 1; i <= n[k]; i++) a[i] = stl[k, i]; ms = med(a, n[k])
            delete a; for (i = 1; i <= ng[k]; i++) a[i] = gm[k, i]; mg = med(a, ng[k])
            delete a; for (i = 1; i <= nt[k]; i++) a[i] = tko[k, i]; mt = med(a, nt[k])
            printf "| **%s, %d trials** | all %d in %d of %d (fewest %d) | %s (median) | %s (median) | %s | %s (median) | |\n",
                k, n[k], sess[k], all[k] + 0, n[k], few[k], ms, mg, (ng[k] ? sprintf("%.0f", mx[k]) : "–"), mt
        }
    }' "$TMP/$s.rows"
    echo
}

# ---- main -------------------------------------------------------------------

DATE=$(date -u +%Y-%m-%d)
FAILED=0
for part in "${PART_LIST[@]}"; do
    log "=== $part: $TRIALS trials of $SESSIONS sessions"
    : >"$TMP/$part.rows"
    SD=$TMP/$part # the setup's configs and logs
    mkdir -p "$SD"
    rc=0
    LOAD[$part]="load average $(cut -d' ' -f1 /proc/loadavg) at the start"
    run_part "$part" || rc=$?
    LOAD[$part]+=", $(cut -d' ' -f1 /proc/loadavg) at the end"
    case $rc in
        0) RESULT[$part]=ok ;;
        3) RESULT[$part]=skipped ;;
        *) RESULT[$part]=error; FAILED=1; log "=== $part: FAILED (see above)" ;;
    esac
    teardown
done

{
    echo "### Sessions across a failover ($DATE)"
    echo
    echo "\`$CMDLINE\` with TRIALS=$TRIALS SESSIONS=$SESSIONS HOLD=$HOLD KA_RT_PRIORITY=$KA_RT_PRIORITY, $(uname -r), $(nproc) cores,"
    echo "keepalived $(keepalived -v 2>&1 | sed -n '1s/^Keepalived v\([^ ]*\).*/\1/p'), conntrackd $(conntrackd -v 2>&1 | sed -n '1s/.* v\([0-9][0-9.]*[0-9]\).*/\1/p');"
    echo "tandem ${TANDEM_SRC:-not built}. $SESSIONS sessions, a line every 100 ms each, each waiting for its echo;"
    echo "gap = time between two answered lines (100 ms when nothing happens), over the survivors;"
    echo "stalled = survivors with a gap over 150 ms; take-over = from the switch port going down (ip monitor; its stamp may come late on a busy machine) or the switchover command, to the VIP's add on the other box (netlink)."
    echo
    for part in "${PART_LIST[@]}"; do
        case ${RESULT[$part]} in
            ok) table "$part" ;;
            skipped) printf '#### %s\n\nskipped: `tandem validate` refuses this config (%s)\n\n' "${TITLE[$part]}" \
                "$(grep -m1 . "$TMP/$part/validate-lb1.log" 2>/dev/null | sed 's#^.*tandem.yaml:##' | tr '|' '/')" ;;
            *) printf '#### %s\n\nerror: the run failed; partial rows:\n\n' "${TITLE[$part]}"
               [[ -s $TMP/$part.rows ]] && table "$part" | tail -n +3 ;;
        esac
    done
} >"$TMP/report.md"
cat "$TMP/report.md"
if [[ -n $OUT ]]; then cp "$TMP/report.md" "$OUT"; log "report written to $OUT"; fi
exit $FAILED
