#!/usr/bin/env bash
# Tandem's lab topology: five boxes in network namespaces joined by a bridge
# that lives in a namespace of its own. No lab address exists in the root
# namespace and there is no route out of the lab.
#
#   PREFIX-sw      bridge br0, one port p-BOX per box
#   PREFIX-lb1     eth0 198.18.0.11/24
#   PREFIX-lb2     eth0 198.18.0.12/24
#   PREFIX-client  eth0 198.18.0.2/24
#   PREFIX-be1     eth0 198.18.0.21/24
#   PREFIX-be2     eth0 198.18.0.22/24
#
# plus a dedicated cable between the two load balancers, outside the bridge
# (a second heartbeat path, as the appliances had):
#
#   PREFIX-lb1 hb0 198.19.0.11/24 <-> PREFIX-lb2 hb0 198.19.0.12/24
#
# and with `up --inside` (or TANDEM_LAB_INSIDE=1) the servers' subnet behind
# the pair, as the appliances had it: a second bridge and two servers whose
# default gateway is the pair's inside floating address 198.19.1.1 (held by
# the master; the lab adds no such address). lb1 and lb2 then forward
# (net.ipv4.ip_forward=1 in their namespaces only). The outside (client,
# be1, be2) has no route to 198.19.1.0/24.
#
#   PREFIX-isw     bridge br1, one port i-BOX per inside cable
#   PREFIX-lb1     eth1 198.19.1.11/24
#   PREFIX-lb2     eth1 198.19.1.12/24
#   PREFIX-srv1    eth0 198.19.1.21/24, default via 198.19.1.1
#   PREFIX-srv2    eth0 198.19.1.22/24, default via 198.19.1.1
#
# Usage: scripts/lab.sh [-p PREFIX] up [--inside]|down|status
#        scripts/lab.sh [-p PREFIX] pull BOX|plug BOX
#        scripts/lab.sh [-p PREFIX] ipull BOX|iplug BOX
#        scripts/lab.sh [-p PREFIX] hbpull|hbplug
#        scripts/lab.sh [-p PREFIX] partition [all|ip]|isolate BOX|heal
#        scripts/lab.sh [-p PREFIX] exec BOX CMD [ARG...]
#
# PREFIX defaults to $TANDEM_LAB_PREFIX, else "tdm"; parallel tests use
# distinct prefixes. pull BOX sets the bridge side of BOX's cable down (BOX's
# eth0 loses carrier, a real cable pull); plug BOX sets it up again (srv1
# and srv2: their cable to the inside bridge). ipull and iplug do the same
# to lb1's or lb2's inside cable (eth1).
# hbpull and hbplug do the same to the dedicated cable (both hb0 lose
# carrier). partition cuts only the path between lb1 and lb2 on the switch
# (nftables in the switch's namespace; both still reach every other box):
# all drops every frame between them, ip only IPv4 (ARP still passes, as
# when a firewall drops the heartbeats on a shared LAN). isolate BOX drops
# every frame to or from BOX while its carrier stays up. heal removes every
# such rule.
# down kills the processes left inside the lab's namespaces (our own tests'
# and demos') and deletes the namespaces.
set -euo pipefail

BOXES=(lb1 lb2 client be1 be2)
declare -A ADDR=(
    [lb1]=198.18.0.11/24
    [lb2]=198.18.0.12/24
    [client]=198.18.0.2/24
    [be1]=198.18.0.21/24
    [be2]=198.18.0.22/24
)
# the inside subnet (up --inside): servers, and the pair's eth1
INSIDE_BOXES=(srv1 srv2)
declare -A IADDR=(
    [lb1]=198.19.1.11/24
    [lb2]=198.19.1.12/24
    [srv1]=198.19.1.21/24
    [srv2]=198.19.1.22/24
)
INSIDE_GW=198.19.1.1

die() { echo "lab.sh: $*" >&2; exit 1; }
say() { echo "lab.sh: $*" >&2; }

usage() {
    sed -n '/^# Usage:/,/^# PREFIX/{s/^# \{0,1\}//;p}' "$0" | sed '$d' >&2
    exit 2
}

P=${TANDEM_LAB_PREFIX:-tdm}
while getopts ":p:h" opt; do
    case $opt in
        p) P=$OPTARG ;;
        h) usage ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[[ $# -ge 1 ]] || usage
[[ $P =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "bad prefix '$P': 1-8 chars, [a-z][a-z0-9]*"

command -v ip >/dev/null || die "iproute2 missing: run scripts/deps.sh"
[[ $(id -u) -eq 0 ]] || die "must run as root"

SW=$P-sw
ISW=$P-isw

ns_exists() { ip netns list | awk '{print $1}' | grep -qx -- "$1"; }

check_box() {
    local b=$1
    [[ -n ${ADDR[$b]:-} || -n ${IADDR[$b]:-} ]] || die "unknown box '$b' (one of: ${BOXES[*]} ${INSIDE_BOXES[*]})"
    ns_exists "$P-$b" || die "namespace $P-$b missing: run '$0 -p $P up${IADDR[$b]:+ --inside}' first"
}

check_inside() {
    ns_exists "$ISW" || die "lab '$P' has no inside subnet: run '$0 -p $P up --inside'"
}

# Kill what runs inside namespace $1 (TERM, then KILL after 2 s), except
# ourselves and our parent, then delete the namespace.
kill_ns_procs() {
    local ns=$1 pids=() p
    for p in $(ip netns pids "$ns" 2>/dev/null || true); do
        [[ $p == "$$" || $p == "$PPID" ]] && continue
        pids+=("$p")
    done
    [[ ${#pids[@]} -eq 0 ]] && return 0
    say "$ns: stopping pids ${pids[*]}"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    local i
    for i in $(seq 1 20); do
        local alive=()
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
        [[ ${#alive[@]} -eq 0 ]] && return 0
        sleep 0.1
    done
    say "$ns: killing pids ${alive[*]}"
    kill -KILL "${alive[@]}" 2>/dev/null || true
    sleep 0.1
}

lab_down() {
    local ns found=0
    for ns in "$P-client" "$P-srv1" "$P-srv2" "$P-lb1" "$P-lb2" "$P-be1" "$P-be2" "$SW" "$ISW"; do
        ns_exists "$ns" || continue
        found=1
        kill_ns_procs "$ns"
        ip netns del "$ns" || die "cannot delete namespace $ns"
    done
    if [[ $found -eq 1 ]]; then say "lab '$P' down"; fi
    return 0
}

lab_up() {
    local inside=$1
    if ns_exists "$SW" || ns_exists "$P-lb1" || ns_exists "$P-client" || ns_exists "$ISW"; then
        say "lab '$P' exists: tearing it down first"
        lab_down
    fi
    # anything half-made is removed if we fail midway
    trap 'say "up failed: tearing down"; lab_down' ERR

    ip netns add "$SW"
    ip -n "$SW" link set lo up
    ip -n "$SW" link add br0 type bridge \
        forward_delay 0 stp_state 0 mcast_snooping 0 ageing_time 3000
    ip -n "$SW" link set br0 up

    local b ns
    for b in "${BOXES[@]}"; do
        ns=$P-$b
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        # created directly inside the switch and box namespaces: the pair
        # never exists in the root namespace
        ip -n "$SW" link add "p-$b" type veth peer name eth0 netns "$ns"
        ip -n "$SW" link set "p-$b" master br0
        ip -n "$SW" link set "p-$b" up
        ip -n "$ns" addr add "${ADDR[$b]}" dev eth0
        ip -n "$ns" link set eth0 up
    done

    # the dedicated cable: a veth pair straight between lb1 and lb2
    ip -n "$P-lb1" link add hb0 type veth peer name hb0 netns "$P-lb2"
    ip -n "$P-lb1" addr add 198.19.0.11/24 dev hb0
    ip -n "$P-lb2" addr add 198.19.0.12/24 dev hb0
    ip -n "$P-lb1" link set hb0 up
    ip -n "$P-lb2" link set hb0 up

    for b in lb1 lb2; do
        ip netns exec "$P-$b" sysctl -qw net.ipv4.ip_nonlocal_bind=1
        ip netns exec "$P-$b" sysctl -qw net.ipv4.conf.eth0.arp_notify=1
    done
    [[ $inside -eq 1 ]] && inside_up

    # wait until every port forwards and every eth0 has carrier
    local i ok
    for i in $(seq 1 50); do
        ok=1
        for b in "${BOXES[@]}"; do
            ip -n "$P-$b" link show eth0 | grep -q 'LOWER_UP' || ok=0
            bridge -n "$SW" link show dev "p-$b" | grep -q 'state forwarding' || ok=0
        done
        [[ $ok -eq 1 ]] && break
        sleep 0.1
    done
    [[ $ok -eq 1 ]] || die "links not up after 5 s"
    [[ $inside -eq 1 ]] && inside_wait
    trap - ERR
    say "lab '$P' up: ${BOXES[*]} on 198.18.0.0/24 via $SW/br0"
    [[ $inside -eq 1 ]] && say "inside: lb1 lb2 ${INSIDE_BOXES[*]} on 198.19.1.0/24 via $ISW/br1 (servers' gateway $INSIDE_GW)"
    return 0
}

# inside_up: the second bridge, the servers, the pair's eth1 and forwarding.
inside_up() {
    ip netns add "$ISW"
    ip -n "$ISW" link set lo up
    ip -n "$ISW" link add br1 type bridge \
        forward_delay 0 stp_state 0 mcast_snooping 0 ageing_time 3000
    ip -n "$ISW" link set br1 up
    local b ns dev
    for b in "${INSIDE_BOXES[@]}"; do
        ip netns add "$P-$b"
        ip -n "$P-$b" link set lo up
    done
    for b in lb1 lb2 "${INSIDE_BOXES[@]}"; do
        ns=$P-$b
        dev=eth0; [[ $b == lb? ]] && dev=eth1
        ip -n "$ISW" link add "i-$b" type veth peer name "$dev" netns "$ns"
        ip -n "$ISW" link set "i-$b" master br1
        ip -n "$ISW" link set "i-$b" up
        ip -n "$ns" addr add "${IADDR[$b]}" dev "$dev"
        ip -n "$ns" link set "$dev" up
    done
    for b in "${INSIDE_BOXES[@]}"; do
        # on-link: the gateway is in eth0's subnet, present or not
        ip -n "$P-$b" route add default via "$INSIDE_GW" dev eth0
    done
    for b in lb1 lb2; do
        ip netns exec "$P-$b" sysctl -qw net.ipv4.ip_forward=1
        ip netns exec "$P-$b" sysctl -qw net.ipv4.conf.eth1.arp_notify=1
    done
}

inside_wait() {
    local i ok b dev
    for i in $(seq 1 50); do
        ok=1
        for b in lb1 lb2 "${INSIDE_BOXES[@]}"; do
            dev=eth0; [[ $b == lb? ]] && dev=eth1
            ip -n "$P-$b" link show "$dev" | grep -q 'LOWER_UP' || ok=0
            bridge -n "$ISW" link show dev "i-$b" | grep -q 'state forwarding' || ok=0
        done
        [[ $ok -eq 1 ]] && return 0
        sleep 0.1
    done
    die "inside links not up after 5 s"
}

# The switch's filter: one bridge table in the switch namespace, created on
# first use; heal flushes it.
FILTER=tandemlab
# filter_rules RULE...: adds the rules (each one string) in ONE nft
# transaction, so a cut is never one-way for an instant (a partition whose
# second direction lagged let one box's heartbeats through on a busy
# machine, which is not the fault under test).
filter_rules() {
    command -v nft >/dev/null || die "nft missing: run scripts/deps.sh (package nftables)"
    {
        echo "add table bridge $FILTER"
        echo "add chain bridge $FILTER c { type filter hook forward priority 0; policy accept; }"
        for r in "$@"; do echo "add rule bridge $FILTER c $r"; done
    } | ip netns exec "$SW" nft -f -
}

lab_partition() {
    local what=${1:-all} match=""
    case $what in
        all) ;;
        ip) match="ether type ip" ;;
        *) usage ;;
    esac
    filter_rules "iifname p-lb1 oifname p-lb2 $match counter drop" \
                 "iifname p-lb2 oifname p-lb1 $match counter drop"
}

lab_isolate() {
    filter_rules "iifname p-$1 counter drop" "oifname p-$1 counter drop"
}

lab_heal() {
    if ip netns exec "$SW" nft list table bridge "$FILTER" >/dev/null 2>&1; then
        ip netns exec "$SW" nft delete table bridge "$FILTER"
    fi
}

lab_status() {
    local ns any=0
    local all=("$SW" "$P-lb1" "$P-lb2" "$P-client" "$P-be1" "$P-be2")
    ns_exists "$ISW" && all+=("$ISW" "$P-srv1" "$P-srv2")
    for ns in "${all[@]}"; do
        if ! ns_exists "$ns"; then
            echo "$ns: (absent)"
            continue
        fi
        any=1
        echo "$ns:"
        if [[ $ns == "$SW" || $ns == "$ISW" ]]; then
            ip -n "$ns" -br link show | sed 's/^/  /'
        else
            ip -n "$ns" -br addr show dev eth0 | sed 's/^/  /'
            if ip -n "$ns" link show eth1 >/dev/null 2>&1; then
                ip -n "$ns" -br addr show dev eth1 | sed 's/^/  /'
            fi
            local pids
            pids=$(ip netns pids "$ns" | tr '\n' ' ')
            [[ -n $pids ]] && echo "  pids: $pids"
        fi
    done
    [[ $any -eq 1 ]] || return 1
}

cmd=$1; shift
case $cmd in
    up)
        inside=0
        case ${TANDEM_LAB_INSIDE:-0} in 1|yes|true) inside=1 ;; esac
        [[ $# -le 1 ]] || usage
        if [[ $# -eq 1 ]]; then [[ $1 == --inside ]] || usage; inside=1; fi
        lab_up "$inside"
        ;;
    down)   [[ $# -eq 0 ]] || usage; lab_down ;;
    status) [[ $# -eq 0 ]] || usage; lab_status ;;
    pull|plug)
        [[ $# -eq 1 ]] || usage
        check_box "$1"
        state=down; [[ $cmd == plug ]] && state=up
        if [[ -n ${ADDR[$1]:-} ]]; then
            ip -n "$SW" link set "p-$1" "$state"
        else
            ip -n "$ISW" link set "i-$1" "$state"
        fi
        ;;
    ipull|iplug)
        [[ $# -eq 1 ]] || usage
        [[ $1 == lb1 || $1 == lb2 ]] || die "ipull/iplug: lb1 or lb2 (servers: pull/plug srv1|srv2)"
        check_box "$1"; check_inside
        state=down; [[ $cmd == iplug ]] && state=up
        ip -n "$ISW" link set "i-$1" "$state"
        ;;
    hbpull|hbplug)
        [[ $# -eq 0 ]] || usage
        check_box lb1
        state=down; [[ $cmd == hbplug ]] && state=up
        ip -n "$P-lb1" link set hb0 "$state"
        ;;
    partition) [[ $# -le 1 ]] || usage; check_box lb1; lab_partition "${1:-all}" ;;
    isolate)   [[ $# -eq 1 ]] || usage; check_box "$1"; lab_isolate "$1" ;;
    heal)      [[ $# -eq 0 ]] || usage; ns_exists "$SW" || die "lab '$P' is not up"; lab_heal ;;
    exec)
        [[ $# -ge 2 ]] || usage
        check_box "$1"
        box=$1; shift
        exec ip netns exec "$P-$box" "$@"
        ;;
    *) usage ;;
esac
