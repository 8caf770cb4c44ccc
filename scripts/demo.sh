#!/usr/bin/env bash
# make demo: a Tandem pair in network namespaces, serving, failing over and
# showing its status.
#   1. lab: lb1, lb2, a client and two backends on a bridge (198.18.0.0/24)
#   2. backends: nginx (HTTP) and dnsmasq (DNS) on be1 and be2
#   3. the pair starts with three virtual clusters on VIP 198.18.0.100:
#      web (HTTP, round robin), dns (UDP), app (HTTP, sticky clients)
#   4. client traffic: curl, dig, 50 sticky users; status of both boxes
#   5. lb1's cable is pulled: lb2 takes over; the client's view
#   6. the cable is plugged back: lb1 preempts once in sync
#   7. everything is torn down
# Beside them, 50 long-lived sessions (a line every 100 ms, like IM or LDAP)
# through a mode: nat cluster (im, the servers srv1 and srv2 on the inside
# subnet behind the pair) and 50 through the same servers on a proxy
# cluster (im-proxy): the nat sessions survive the pull and the plug-back,
# the proxy ones do not.
# Each box serves the browser console on its own 127.0.0.1:9111 (user admin,
# the password printed); DEMO_HOLD=SECONDS keeps the lab up that long at the
# end, with lb1's console forwarded to this machine's 127.0.0.1:9111.
# Exits 0 only when every step behaved. Needs root; run through `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/nginx.sh

P=${TANDEM_LAB_PREFIX:-tdemo}
BIN=${TANDEM_BIN:-bin/tandem}
TOOLS=${LABTOOLS_BIN:-bin/labtools}
VIP=198.18.0.100
USERS=50
HOLD=${DEMO_HOLD:-0}
[[ $HOLD =~ ^[0-9]+$ && $HOLD -le 3600 ]] || { echo "demo: DEMO_HOLD must be 0..3600 (seconds)" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "demo: must run as root (network namespaces)" >&2; exit 1; }
[[ -x $BIN && -x $TOOLS ]] || { echo "demo: build first: make build" >&2; exit 1; }

# TMP, PIDS, and the EXIT trap that stops them and the lab
. scripts/lib/proc.sh
lab_session tandem-demo

START=$(date +%s.%N)
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ok() { printf '   ok: %s\n' "$*"; }
fail() { printf '   FAILED: %s\n' "$*"; echo "   logs:"; tail -n 20 "$TMP"/lb*.log | sed 's/^/     /'; exit 1; }
in_ns() { local box=$1; shift; ip netns exec "$P-$box" "$@"; }

status_json() { "$BIN" status --socket "$TMP/$1.sock" --json 2>/dev/null; }
state() { status_json "$1" | sed -n 's/^  "state": "\(.*\)",/\1/p'; }
holds() { ip -n "$P-$1" -br addr show dev eth0 | grep -q "$VIP/"; }
ready() { # every server healthy, persistence in sync
    local j; j=$(status_json "$1")
    ! grep -q '"healthy": false' <<<"$j" && grep -q '"state": "IN SYNC"' <<<"$j"
}
wait_until() { # SECONDS DESCRIPTION COMMAND...
    local secs=$1 what=$2; shift 2
    local end=$(( $(date +%s%N) + secs * 1000000000 ))
    until "$@"; do
        (( $(date +%s%N) < end )) || fail "timed out after ${secs}s waiting for $what"
        sleep 0.02
    done
}
pair_is() { [[ $(state lb1) == "$1" && $(state lb2) == "$2" ]]; }
users() { in_ns client "$TOOLS" clients -target "http://$VIP:8080/" -from 198.18.2.1 -count $USERS -concurrency 10; }
# kept BEFORE AFTER: how many users an answer from the same server
kept() { python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); print(sum(1 for k,v in a.items() if v and b.get(k)==v))' "$1" "$2"; }
dig_who() { in_ns client dig +short +time=1 +tries=1 @"$VIP" who.lab A | tr '\n' ' '; }

step "1. lab: lb1, lb2, client, be1, be2 in namespaces '$P-*', bridge in '$P-sw'; srv1, srv2 behind the pair"
scripts/lab.sh -p "$P" up --inside
for i in $(seq 1 $USERS); do echo "addr add 198.18.2.$i/23 dev eth0"; done >"$TMP/users.batch"
ip -n "$P-client" -batch "$TMP/users.batch"
for lb in lb1 lb2; do ip -n "$P-$lb" route add 198.18.2.0/23 dev eth0; done
ok "$USERS user addresses 198.18.2.1-$USERS on the client"

step "2. backends: nginx and dnsmasq on be1 and be2"
for be in be1 be2; do
    d=$TMP/nginx-$be
    nginx_backend_conf "$d" "$be"
    in_ns "$be" nginx -c "$d/nginx.conf" -p "$d" & PIDS+=($!)
    answer=198.18.1.${be#be}
    in_ns "$be" dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll --conf-file=/dev/null \
        --port=53 --listen-address=0.0.0.0 --bind-interfaces --user=root --pid-file="$TMP/$be-dnsmasq.pid" \
        --address=/who.lab/"$answer" --log-facility="$TMP/$be-dnsmasq.log" & PIDS+=($!)
done
for srv in srv1 srv2; do
    in_ns "$srv" "$TOOLS" echo -listen 0.0.0.0:5222 2>>"$TMP/echo.log" & PIDS+=($!)
done
ok "nginx answers its name on :80; dnsmasq answers who.lab (be1 198.18.1.1, be2 198.18.1.2)"
ok "srv1 and srv2 (198.19.1.21, .22; gateway 198.19.1.1, the pair's inside VIP) echo lines on :5222"

step "3. the pair starts (lb1 priority 150, lb2 priority 100, adverts every 50ms)"
"$BIN" keygen >"$TMP/cluster.key"
WEBPW=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')
echo "$WEBPW" | "$BIN" web passwd "$TMP/web-users" admin --role admin >/dev/null
for n in lb1 lb2; do
    if [[ $n == lb1 ]]; then prio=150 self=198.18.0.11 peer=198.18.0.12 hbs=198.19.0.11 hbp=198.19.0.12
    else prio=100 self=198.18.0.12 peer=198.18.0.11 hbs=198.19.0.12 hbp=198.19.0.11; fi
    cat >"$TMP/$n.yaml" <<CONF
node:
  name: $n
  api_socket: $TMP/$n.sock
  web_listen: 127.0.0.1:9111
  web_users_file: $TMP/web-users
cluster:
  bind: $self:7946
  peers: [$peer:7946]
  secret_file: $TMP/cluster.key
  heartbeat_paths: [{bind: "$hbs:7946", peer: "$hbp:7946"}]
failover:
  interface: eth0
  priority: $prio
  preempt: true
  advert_interval: 50ms
  vips: [$VIP/24, 198.19.1.1/24 dev eth1]
clusters:
  - name: im
    vip: $VIP
    port: 5222
    mode: nat
    algorithm: maglev
    health_check: {type: tcp, interval: 300ms, timeout: 200ms, rise: 1, fall: 1}
    servers:
      - {name: srv1, address: "198.19.1.21:5222"}
      - {name: srv2, address: "198.19.1.22:5222"}
  - name: im-proxy
    vip: $VIP
    port: 5223
    health_check: {type: tcp, interval: 300ms, timeout: 200ms, rise: 1, fall: 1}
    servers:
      - {name: srv1, address: "198.19.1.21:5222"}
      - {name: srv2, address: "198.19.1.22:5222"}
  - name: web
    vip: $VIP
    port: 80
    algorithm: round_robin
    health_check: {type: http, path: /, interval: 300ms, timeout: 200ms, rise: 1, fall: 1}
    servers:
      - {name: be1, address: "198.18.0.21:80"}
      - {name: be2, address: "198.18.0.22:80"}
  - name: dns
    vip: $VIP
    port: 53
    protocol: udp
    health_check: {type: dns, query: who.lab, interval: 300ms, timeout: 200ms, rise: 1, fall: 1}
    servers:
      - {name: be1, address: "198.18.0.21:53"}
      - {name: be2, address: "198.18.0.22:53"}
  - name: app
    vip: $VIP
    port: 8080
    algorithm: least_conn
    persistence: {mode: source_ip, mask: 32, timeout: 10m}
    health_check: {type: http, path: /, interval: 300ms, timeout: 200ms, rise: 1, fall: 1}
    servers:
      - {name: be1, address: "198.18.0.21:80"}
      - {name: be2, address: "198.18.0.22:80"}
CONF
    "$BIN" validate --config "$TMP/$n.yaml"
    in_ns "$n" "$BIN" run --config "$TMP/$n.yaml" >"$TMP/$n.log" 2>&1 & PIDS+=($!)
done
wait_until 15 "lb1 MASTER, lb2 BACKUP" pair_is MASTER BACKUP
wait_until 5 "the VIP on lb1" holds lb1
wait_until 10 "healthy servers and persistence in sync" ready lb1
ok "lb1 is MASTER and holds $VIP; lb2 is BACKUP, warm (its checks run too)"
for n in lb1 lb2; do
    in_ns "$n" curl -sf -m 2 -o /dev/null http://127.0.0.1:9111/ || fail "$n's console does not answer on 127.0.0.1:9111"
done
ok "each box's console answers on its 127.0.0.1:9111 (user admin, password $WEBPW)"

step "4. client traffic through $VIP"
printf '   web (curl x4):  '; for i in 1 2 3 4; do in_ns client curl -s -m 2 "http://$VIP/" | tr '\n' ' '; done; echo
printf '   dns (dig x4):   '; for i in 1 2 3 4; do dig_who; done; echo
users >"$TMP/users-before.json"
printf '   app: %s sticky users answered (%s)\n' "$USERS" \
    "$(python3 -c 'import json,sys,collections; print(dict(collections.Counter(json.load(open(sys.argv[1])).values())))' "$TMP/users-before.json")"
in_ns client "$TOOLS" probe -q -target "$VIP:80" -send 'GET / HTTP/1.0\r\n\r\n' -interval 10ms -timeout 50ms \
    -duration 90s -out "$TMP/probe.jsonl" >"$TMP/probe.json" 2>/dev/null & PROBE=$!
PIDS+=($PROBE)
wait_until 5 "lb2 to hold every sticky entry" bash -c "'$BIN' status --socket '$TMP/lb2.sock' --json | grep -q '\"entries\": $USERS'"
for c in im:5222 im-proxy:5223; do
    rm -f "$TMP/${c%%:*}.ready"
    in_ns client "$TOOLS" sessions -target "$VIP:${c#*:}" -n 50 -duration 60s -ready "$TMP/${c%%:*}.ready" \
        -stop "$TMP/sessions.stop" >"$TMP/${c%%:*}.json" 2>/dev/null & PIDS+=($!)
done
wait_until 10 "50 sessions on im and on im-proxy" bash -c "[[ -e '$TMP/im.ready' && -e '$TMP/im-proxy.ready' ]]"
wait_until 5 "lb2 to hold the nat sessions' connection state" bash -c \
    "'$BIN' status --socket '$TMP/lb2.sock' --json | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)[\"persistence\"][\"conntrack_entries\"] >= 50 else 1)'"
ok "50 sessions on im (mode: nat) and 50 on im-proxy (mode: proxy), a line every 100 ms each; lb2 holds the nat ones' connection state"
sleep 0.5
"$BIN" status --socket "$TMP/lb1.sock" --socket "$TMP/lb2.sock"

step "5. pulling lb1's cable (ip -n $P-sw link set p-lb1 down) while the client probes web every 10ms"
PULL=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
scripts/lab.sh -p "$P" pull lb1
wait_until 5 "lb2 to take over" pair_is FAULT MASTER
wait_until 5 "the VIP on lb2" holds lb2
holds lb1 && fail "lb1 still holds the VIP"
ok "lb2 is MASTER and holds the VIP; lb1 is FAULT and released it"
sleep 0.5
users >"$TMP/users-pulled.json"
k=$(kept "$TMP/users-before.json" "$TMP/users-pulled.json")
printf '   web outage: %s ms (first failed to first answered probe)\n' \
    "$("$TOOLS" outage -in "$TMP/probe.jsonl" -after "$PULL" -print max_ms)"
printf '   sticky users on the same server through lb2: %s of %s\n' "$k" "$USERS"
printf '   dns through lb2: %s\n' "$(dig_who)"
[[ $k -eq $USERS ]] || fail "sticky users lost their server"

step "6. plugging lb1's cable back: lb1 preempts once in sync and healthy"
PLUG=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
scripts/lab.sh -p "$P" plug lb1
wait_until 10 "lb1 to preempt" pair_is MASTER BACKUP
wait_until 5 "the VIP back on lb1 only" bash -c "ip -n $P-lb1 -br addr show dev eth0 | grep -q $VIP/ && ! ip -n $P-lb2 -br addr show dev eth0 | grep -q $VIP/"
ok "lb1 is MASTER again; lb2 released the VIP"
sleep 0.5
users >"$TMP/users-back.json"
k2=$(kept "$TMP/users-before.json" "$TMP/users-back.json")
kill -TERM "$PROBE"; wait "$PROBE" || true
printf '   web probes failed after the plug-back: %s\n' "$("$TOOLS" outage -in "$TMP/probe.jsonl" -after "$PLUG" -print failed)"
printf '   sticky users on the same server through lb1 again: %s of %s\n' "$k2" "$USERS"
[[ $k2 -eq $USERS ]] || fail "sticky users lost their server after the plug-back"

touch "$TMP/sessions.stop"
wait_until 10 "the sessions to report" bash -c "[[ -s '$TMP/im.json' && -s '$TMP/im-proxy.json' ]]"
summary() { python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("%d of %d sessions survived the pull and the plug-back (longest wait for an answer %.0f ms)" % (s["survived"], s["sessions"], s["gap_max_ms"]))' "$1"; }
printf '   im (mode: nat):         %s
' "$(summary "$TMP/im.json")"
printf '   im-proxy (mode: proxy): %s
' "$(summary "$TMP/im-proxy.json")"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if s["survived"] == s["sessions"] == 50 else 1)' "$TMP/im.json" \
    || fail "nat sessions were lost"

step "the timeline of both boxes (tandem events)"
"$BIN" events --socket "$TMP/lb1.sock" --socket "$TMP/lb2.sock" --last 40

if [[ $HOLD -gt 0 ]]; then
    step "holding the lab for ${HOLD}s: lb1's console at http://127.0.0.1:9111 (admin / $WEBPW)"
    # loopback only: this machine's 127.0.0.1:9111 to lb1's, through ip netns exec
    timeout "$HOLD" socat TCP-LISTEN:9111,bind=127.0.0.1,reuseaddr,fork \
        EXEC:"ip netns exec $P-lb1 socat STDIO TCP\:127.0.0.1\:9111" || true
fi

step "7. tearing down"
lab_session_end
trap - EXIT
awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN { printf "\ndemo: every step behaved (%.1fs)\n", e - s }'
