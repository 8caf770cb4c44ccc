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
# nbthread 1. The feeder pipelines `set table bk key IP data.server_id N`
# lines on one CLI connection in prompt mode and counts the answers; a watcher
# polls `show table` (the summary line, used:) on hp2 every 5 ms.
#   lag        HP_LAG_RATE entries/s for HP_LAG_SECS s into hp1: per entry,
#              hp1's CLI answer → counted in hp2's used: (p50/p99, ±5 ms poll)
#   insert     HP_INSERT_N entries as fast as hp1's CLI takes them: entries/s,
#              hp2 behind when the feed ended, time until it caught up
#   resync     hp1 restarted fresh and filled with HP_RESYNC_N entries (hp2
#              down; hp1's VmRSS before/after gives bytes per entry), then hp2
#              started fresh HP_ROUNDS times: its launch → used: = N (and CLI
#              up → N); below 1M the time is also scaled to 1M, marked so
# Prints the table (figure, goal, Tandem, HAProxy, ratio Tandem/HAProxy), the
# machine's uptime (load) before and after, and writes JSON with -o. Exit 0
# when every figure was measured (a Tandem figure missing its goal is
# reported, not an error). Needs root, Go and python3; installs haproxy and
# socat with scripts/deps.sh. Only processes this script started are stopped,
# by PID; the namespace is deleted on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

OUT=""
KEEP=0
NS=${BENCH_NS:-tbpers}
ONLY=all
GO_COUNT=${GO_COUNT:-3}
HP_INSERT_N=${HP_INSERT_N:-200000}
HP_LAG_RATE=${HP_LAG_RATE:-20000}
HP_LAG_SECS=${HP_LAG_SECS:-5}
HP_RESYNC_N=${HP_RESYNC_N:-1000000}
HP_ROUNDS=${HP_ROUNDS:-3}
TANDEM_SOURCE=${TANDEM_SOURCE:-worktree}

usage() { sed -n '/^# Usage:/,/^# Env:/{/^# Env:/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
die() { echo "bench-persistence: $*" >&2; exit 1; }
log() { echo "bench-persistence: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case $1 in
        -o) OUT=${2:-}; shift 2 || usage ;;
        -n) NS=${2:-}; shift 2 || usage ;;
        --only) ONLY=${2:-}; shift 2 || usage ;;
        --only=*) ONLY=${1#--only=}; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage ;;
        *) usage ;;
    esac
done

[[ $(id -u) -eq 0 ]] || die "must run as root"
[[ $NS =~ ^[a-z][a-z0-9-]{0,14}$ ]] || die "bad namespace name '$NS'"
[[ $ONLY =~ ^(all|tandem|haproxy)$ ]] || die "--only: tandem or haproxy"
[[ $TANDEM_SOURCE =~ ^(worktree|head)$ ]] || die "TANDEM_SOURCE: worktree or head"
num() { [[ ${!1} =~ ^[0-9]+$ && ${!1} -ge $2 && ${!1} -le $3 ]] || die "$1 must be $2..$3"; }
num GO_COUNT 1 20
num HP_INSERT_N 1000 2000000
num HP_LAG_RATE 100 500000
num HP_LAG_SECS 1 60
num HP_RESYNC_N 1000 2000000
num HP_ROUNDS 1 20
command -v python3 >/dev/null || die "python3 is needed"
PY=$(command -v python3)
# TMP, PIDS, cleanup traps, nsx, stop_pid, wait_for
. "$ROOT/scripts/lib/nsbench.sh"
nsbench_init bench-persistence

UPTIME_BEFORE=$(uptime)
log "machine: $(nproc) CPUs, $(uname -r); uptime: $UPTIME_BEFORE"
log "work dir $TMP"

ip netns add "$NS" || die "cannot create namespace $NS"
NS_MADE=1
ip -n "$NS" link set lo up

# ---------------------------------------------------------------- helper
cat >"$TMP/hp.py" <<'PYEOF'
# helper of scripts/bench-persistence.sh: HAProxy's CLI, and the report
import bisect, json, os, re, socket, statistics, sys, threading, time

USED = re.compile(rb"# table: (\S+), type: \S+, size:\d+, used:(\d+)")

def used(sock, table, timeout=5):
    s = socket.socket(socket.AF_UNIX); s.settimeout(timeout)
    try:
        s.connect(sock); s.sendall(b"show table\n")
        buf = b""
        while True:
            d = s.recv(65536)
            if not d: break
            buf += d
    finally:
        s.close()
    for m in USED.finditer(buf):
        if m.group(1).decode() == table: return int(m.group(2))
    raise RuntimeError("no table %s in %r" % (table, buf[:200]))

def cpu_s(pid):
    try:
        f = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None

def pct(v, q):
    v = sorted(v); return v[int(q * (len(v) - 1))] if v else None

class Watch(threading.Thread):
    """polls the peer's used: every interval, samples (t, used)"""
    def __init__(self, sock, table, interval, until):
        super().__init__(daemon=True)
        self.sock, self.table, self.interval, self.until = sock, table, interval, until
        self.samples, self.stop, self.err = [], False, None
    def run(self):
        while not self.stop:
            try:
                n = used(self.sock, self.table)
                self.samples.append((time.monotonic(), n))
                if n >= self.until: return
            except Exception as e:
                self.err = repr(e)
            time.sleep(self.interval)

def cmd_feed(a):
    sock, table, first, count = a["sock"], a["table"], int(a["first"]), int(a["count"])
    rate = float(a.get("rate", 0)); base_used = used(sock, table)
    peer_base = used(a["peer"], table) if a.get("peer") else 0
    tb = table.encode(); lines = []
    for i in range(first, first + count):
        u = 0x0a000000 + i
        lines.append(b"set table %s key %d.%d.%d.%d data.server_id %d\n" % (tb, u >> 24, (u >> 16) & 255, (u >> 8) & 255, u & 255, 1 + i % 16))
    s = socket.socket(socket.AF_UNIX); s.connect(sock)
    acks, err = [], []  # acks: (t, commands answered so far)
    def reader():
        tail, n = b"", -1  # the first prompt answers "prompt"
        try:
            while n < count:
                d = s.recv(1 << 20)
                if not d: break
                n += (tail + d).count(b"\n> "); tail = d[-2:]
                acks.append((time.monotonic(), n))
        except Exception as e:
            err.append(repr(e))
    w = Watch(a["peer"], table, float(a.get("poll", 0.005)), peer_base + count) if a.get("peer") else None
    t = threading.Thread(target=reader, daemon=True)
    s.sendall(b"prompt\n")
    t.start()
    if w: w.start()
    c0 = cpu_s(a.get("pid", "x")); t0 = time.monotonic()
    if rate <= 0:
        s.sendall(b"".join(lines))
    else:
        step = max(1, int(rate * 0.002))  # bursts every ~2 ms
        i = 0
        while i < count:
            due = min(count, int(rate * (time.monotonic() - t0)) + step)
            if due > i:
                s.sendall(b"".join(lines[i:due])); i = due
            time.sleep(0.001)
    t.join(300)
    t1 = time.monotonic(); c1 = cpu_s(a.get("pid", "x"))
    s.close()
    n = acks[-1][1] if acks else 0
    if err or n < count:
        raise SystemExit("feed: %d of %d answered %s" % (n, count, err))
    r = {"count": count, "secs": t1 - t0, "rate": count / (t1 - t0), "offered_rate": rate or None,
         "used_added": used(sock, table) - base_used,
         "hp1_cpu_s": None if c0 is None or c1 is None else c1 - c0}
    if w:
        w.join(float(a.get("catchup", 30)))
        w.stop = True
        sm = w.samples
        end_used = next((u for (ts, u) in sm if ts >= t1), sm[-1][1] if sm else peer_base) - peer_base
        done = next((ts for (ts, u) in sm if u - peer_base >= count), None)
        p = {"used_when_fed": end_used, "behind_when_fed": count - end_used,
             "caught_up": done is not None,
             "caught_up_after_fed_s": None if done is None else max(0.0, done - t1),
             "all_on_peer_s": None if done is None else done - t0,
             "samples": len(sm), "error": w.err}
        # per-entry lag: entry k counted on the peer minus hp1 answered k
        at, an = [x[0] for x in acks], [x[1] for x in acks]
        pt, pu = [x[0] for x in sm], [x[1] - peer_base for x in sm]
        lags = []
        for k in range(1, count + 1, max(1, count // 5000)):
            i = bisect.bisect_left(an, k); j = bisect.bisect_left(pu, k)
            if i < len(at) and j < len(pt): lags.append(max(0.0, pt[j] - at[i]))
        if lags:
            p.update(lag_p50_ms=pct(lags, .5) * 1e3, lag_p99_ms=pct(lags, .99) * 1e3, lag_max_ms=max(lags) * 1e3)
        r["peer"] = p
    print(json.dumps(r))

def cmd_wait(a):
    """waits for the CLI of a peer launched at the time in t0file, then until used: >= count"""
    sock, table, count, t0file = a["sock"], a["table"], int(a["count"]), a["t0file"]
    poll = float(a.get("poll", 0.005)); deadline = time.time() + float(a.get("timeout", 120))
    up, last = None, 0
    while True:
        try:
            n = used(sock, table, timeout=2); now = time.time()
            if up is None: up = now
            last = n
            if n >= count: break
        except (OSError, RuntimeError):
            pass
        if time.time() > deadline:
            raise SystemExit("wait: %d of %d entries after the timeout" % (last, count))
        time.sleep(poll)
    t0 = float(open(t0file).read())
    pid = open(a["pidfile"]).read().strip() if a.get("pidfile") else "x"
    print(json.dumps({"count": count, "start_to_synced_s": now - t0, "start_to_cli_s": up - t0,
                      "cli_to_synced_s": now - up, "rate": count / (now - t0), "hp2_cpu_s": cpu_s(pid)}))

# ---- report
GODUR = re.compile(r"([\d.]+)(ns|µs|us|ms|s)\b")
def dur_ms(s):
    m = GODUR.match(s); v = float(m.group(1))
    return v * {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)]

def med(v): return statistics.median(v) if v else None

def parse_bench(path):
    out = {}
    for line in open(path, errors="replace"):
        m = re.match(r"(Benchmark\w+)-\d+\s+\d+\s+(.*)", line)
        if not m: continue
        f = m.group(2).split()
        vals = {f[i + 1]: float(f[i]) for i in range(0, len(f) - 1, 2)}
        out.setdefault(m.group(1), []).append(vals)
    return {k: {u: med([x[u] for x in v if u in x]) for u in v[0]} | {"runs": len(v)} for k, v in out.items()}

def parse_mem(path):
    r = {}
    for line in open(path, errors="replace"):
        m = re.search(r"IPv6=(\w+): ([\d.]+) bytes of heap per entry", line)
        if m: r["ipv6" if m.group(1) == "true" else "ipv4"] = float(m.group(2))
    return r

def parse_fig(path):
    r = {"throughput": []}; bulk, walls = None, []
    for line in open(path, errors="replace"):
        m = re.search(r"FIGURE throughput offered\s+(\d+)/s published\s+([\d.]+)/s delivered\s+([\d.]+)/s in (\S+): p50 (\S+) p99 (\S+) max (\S+), discarded (\d+), kept up: (\w+)", line)
        if m:
            r["throughput"].append({"offered": int(m.group(1)), "published": float(m.group(2)), "delivered": float(m.group(3)),
                                    "p99_ms": dur_ms(m.group(6)), "discarded": int(m.group(8)), "kept_up": m.group(9) == "true"})
        m = re.search(r"FIGURE capacity (\d+) new entries in (\S+) = (\d+) entries/s", line)
        if m: r["capacity"] = int(m.group(3))
        m = re.search(r"FIGURE lag at (\d+) new entries/s.*p50 (\S+) p99 (\S+) max (\S+);", line)
        if m: r["lag"] = {"rate": int(m.group(1)), "p50_ms": dur_ms(m.group(2)), "p99_ms": dur_ms(m.group(3)), "max_ms": dur_ms(m.group(4))}
        m = re.search(r"FIGURE bulk run \d+: (\d+) entries, connected → all applied (\S+) .*peer start → BulkReceived (\S+)", line)
        if m: walls.append(dur_ms(m.group(3)))
        m = re.search(r"FIGURE bulk of (\d+) entries: median (\S+)", line)
        if m: bulk = {"entries": int(m.group(1)), "median_ms": dur_ms(m.group(2))}
    kept = [x for x in r["throughput"] if x["kept_up"]]
    if kept:
        best = max(kept, key=lambda x: x["offered"])
        r["sustained"] = {"offered": best["offered"], "delivered": best["delivered"]}
    if bulk:
        bulk["start_to_received_median_ms"] = med(walls); r["bulk"] = bulk
    r["failures"] = [l.strip() for l in open(path, errors="replace") if re.search(r"_test\.go:\d+: .*(>|want)", l)]
    return r

def cmd_report(a):
    def load(p):
        try: return json.load(open(p))
        except (OSError, ValueError): return None
    d = {"uptime_before": a["up0"], "uptime_after": a["up1"], "cpus": os.cpu_count(), "tandem": None, "haproxy": None}
    if os.path.exists(a.get("bench", "")):
        d["tandem"] = {"source": a.get("src"), "sticky": parse_bench(a["bench"]), "memory": parse_mem(a["mem"]), "replicate": parse_fig(a["fig"])}
    hp = {k: load(a[k]) for k in ("lag", "insert", "fill", "resync", "rss") if a.get(k)}
    if any(v is not None for v in hp.values()):
        d["haproxy"] = hp
        d["haproxy"]["version"] = a.get("hpver")
    T, H = d["tandem"] or {}, d["haproxy"] or {}
    st = T.get("sticky", {}); rp = T.get("replicate", {})
    def g(x, *ks):
        for k in ks:
            if not isinstance(x, (dict, list)) or x is None: return None
            x = x.get(k) if isinstance(x, dict) else x[k]
        return x
    N = int(a.get("n", 1000000)); scale = 1e6 / N
    rs = H.get("resync") or []
    hp_bulk = med([x["start_to_synced_s"] * 1e3 * scale for x in rs]) if rs else None
    hp_bulk_cli = med([x["cli_to_synced_s"] * 1e3 * scale for x in rs]) if rs else None
    ins = H.get("insert"); lag = H.get("lag"); rss = H.get("rss")
    scaled = " (scaled from %d)" % N if N != 1000000 else ""
    rows = [
        # figure, goal, tandem, haproxy, unit, ratio?
        ("lookup at 1M, wall ns/op", "≤ 100", g(st, "BenchmarkStickyLookup", "ns/op"), None, "ns"),
        ("lookup at 1M, cpu-ns/op", "≤ 100", g(st, "BenchmarkStickyLookup", "cpu-ns/op"), None, "ns"),
        ("lookup allocs/op", "0", g(st, "BenchmarkStickyLookup", "allocs/op"), None, ""),
        ("insert into 1M, wall ns/op", "≤ 300", g(st, "BenchmarkStickyTouch", "ns/op"), None, "ns"),
        ("insert into 1M, cpu-ns/op", "≤ 300", g(st, "BenchmarkStickyTouch", "cpu-ns/op"), None, "ns"),
        ("bytes/entry at 1M (T heap IPv4, H RSS)", "≤ 150", g(T, "memory", "ipv4"), g(rss, "bytes_per_entry"), "B"),
        ("sustained new entries/s (H: CLI feed)", "≥ 500,000", g(rp, "sustained", "offered"), g(ins, "rate"), "/s"),
        ("  delivered/s at that offered rate", "–", g(rp, "sustained", "delivered"), None, "/s"),
        ("replication capacity entries/s", "–", g(rp, "capacity"), None, "/s"),
        ("lag p99 at 20k/s, ms", "≤ 100", g(rp, "lag", "p99_ms"), g(lag, "peer", "lag_p99_ms"), "ms"),
        ("bulk 1M: peer start → synced, ms" + scaled, "≤ 500", g(rp, "bulk", "start_to_received_median_ms"), hp_bulk, "ms"),
        ("bulk 1M: connected/CLI up → synced, ms" + scaled, "≤ 500", g(rp, "bulk", "median_ms"), hp_bulk_cli, "ms"),
    ]
    def fmt(v):
        if v is None: return "–"
        if abs(v) >= 1000: return "{:,.0f}".format(v)
        return "{:.1f}".format(v) if v != int(v) else "{:.0f}".format(v)
    tab = []
    for f, goal, t, h, u in rows:
        ratio = "%.2f" % (t / h) if t is not None and h else "–"
        tab.append((f, goal, fmt(t), fmt(h), ratio))
        d.setdefault("figures", []).append({"figure": f, "goal": goal, "tandem": t, "haproxy": h, "unit": u,
                                            "ratio": None if ratio == "–" else float(ratio)})
    w = [max(len(r[i]) for r in tab + [("figure", "goal", "Tandem", "HAProxy peers", "ratio T/H")]) for i in range(5)]
    print()
    for r in [("figure", "goal", "Tandem", "HAProxy peers", "ratio T/H")] + tab:
        print("  ".join(r[i].ljust(w[i]) if i == 0 else r[i].rjust(w[i]) for i in range(5)))
    print()
    if T:
        tp = rp.get("throughput", [])
        print("Tandem measured from: %s" % a.get("src"))
        print("Tandem replication per offered rate: " + "; ".join(
            "%dk/s → %.0fk/s p99 %.0f ms%s" % (x["offered"] / 1e3, x["delivered"] / 1e3, x["p99_ms"], "" if x["kept_up"] else " NOT kept up")
            for x in tp))
        print("Tandem IPv6 heap per entry: %s B; goals missed by the Go tests: %s" % (
            fmt(g(T, "memory", "ipv6")), "; ".join(rp.get("failures", [])) or "none"))
    if H:
        if ins:
            p = ins.get("peer", {})
            print("HAProxy insert: %d entries fed into hp1 at %s/s (hp1 CPU %.2f s = %.1f µs/entry); hp2 behind by %s when the feed ended, caught up %s ms later: %s" % (
                ins["count"], fmt(ins["rate"]), ins.get("hp1_cpu_s") or 0, 1e6 * (ins.get("hp1_cpu_s") or 0) / ins["count"],
                fmt(p.get("behind_when_fed")), fmt(1e3 * p["caught_up_after_fed_s"]) if p.get("caught_up") else "–",
                "kept pace" if p.get("caught_up") and (p.get("caught_up_after_fed_s") or 0) < 0.1 else "did NOT keep pace"))
        if lag:
            p = lag.get("peer", {})
            print("HAProxy lag at %s/s: p50 %s ms p99 %s ms max %s ms (hp1 CLI answer → counted on hp2, 5 ms poll)" % (
                fmt(lag.get("offered_rate")), fmt(p.get("lag_p50_ms")), fmt(p.get("lag_p99_ms")), fmt(p.get("lag_max_ms"))))
        if H.get("fill"):
            print("HAProxy fill of hp1 (no peer up): %d entries at %s/s" % (H["fill"]["count"], fmt(H["fill"]["rate"])))
        if rs:
            print("HAProxy resync of %d entries, per fresh start of hp2: %s" % (N, "; ".join(
                "%.0f ms (CLI up at %.0f ms, %.2fM entries/s, hp2 CPU %.2f s)" % (x["start_to_synced_s"] * 1e3, x["start_to_cli_s"] * 1e3,
                                                                                   x["rate"] / 1e6, x["hp2_cpu_s"] or 0) for x in rs)))
        if rss:
            print("HAProxy hp1 VmRSS %d → %d KiB for %d entries" % (rss["before_kib"], rss["after_kib"], rss["entries"]))
    print("uptime before: %s\nuptime after:  %s" % (a["up0"].strip(), a["up1"].strip()))
    la = float(a["up0"].split("load average:")[1].split(",")[0])
    if la > 0.5 * (os.cpu_count() or 1):
        print("NOTE: the machine was loaded (1-min load %.2f on %d CPUs) by other jobs: wall-clock figures are pessimistic; cpu-ns/op is the benchmark's own CPU time" % (la, os.cpu_count()))
    if a.get("out"):
        json.dump(d, open(a["out"], "w"), indent=1)
    if (a.get("want_t") == "1" and not T) or (a.get("want_h") == "1" and not (ins and lag and rs and rss)):
        sys.exit(1)

if __name__ == "__main__":
    a = dict(x.split("=", 1) for x in sys.argv[2:])
    {"feed": cmd_feed, "wait": cmd_wait, "report": cmd_report,
     "used": lambda a: print(used(a["sock"], a["table"]))}[sys.argv[1]](a)
PYEOF
hp() { nsx "$PY" "$TMP/hp.py" "$@"; }

# ---------------------------------------------------------------- Tandem
build_tests() { # build_tests DIR
    log "tandem: building test binaries in $1"
    (cd "$1" && go test -c -o "$TMP/dataplane.test" ./dataplane/ && go test -c -o "$TMP/replicate.test" ./pkg/replicate/)
}
run_tandem() {
    command -v go >/dev/null || die "go is needed"
    # others edit the work tree concurrently: when it does not build, the
    # committed HEAD (git archive) is measured instead, and the report says so
    SRC_DIR=$ROOT; TANDEM_SRC="work tree at $(git rev-parse --short HEAD 2>/dev/null)"
    [[ -z $(git status --porcelain -- . 2>/dev/null | grep -v '^??' || true) ]] ||
        TANDEM_SRC+=" with uncommitted changes"
    if [[ $TANDEM_SOURCE == head ]] || ! build_tests "$ROOT" 2>"$TMP/build.log"; then
        [[ $TANDEM_SOURCE == head ]] || log "the work tree does not build ($(head -3 "$TMP/build.log" | tr '\n' ' ')); using HEAD"
        mkdir -p "$TMP/src"
        git archive HEAD | tar -x -C "$TMP/src" || die "git archive HEAD failed"
        SRC_DIR=$TMP/src; TANDEM_SRC="HEAD $(git rev-parse --short HEAD)"
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
        hp used sock="$TMP/hp$1.sock" table=bk >/dev/null 2>&1 && return 0
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
    nsx "$PY" "$TMP/hp.py" feed sock="$TMP/hp1.sock" peer="$TMP/hp2.sock" table=bk first=0 count="$n" \
        rate="$HP_LAG_RATE" pid="$HP1" >"$TMP/hp-lag.json" || die "lag feed failed"
    cat "$TMP/hp-lag.json" >&2
    log "haproxy: insert $HP_INSERT_N entries unpaced, hp2 watched"
    nsx "$PY" "$TMP/hp.py" feed sock="$TMP/hp1.sock" peer="$TMP/hp2.sock" table=bk first="$n" count="$HP_INSERT_N" \
        pid="$HP1" >"$TMP/hp-insert.json" || die "insert feed failed"
    cat "$TMP/hp-insert.json" >&2
    hp_stop 2; hp_stop 1

    log "haproxy: resync: hp1 fresh, filled with $HP_RESYNC_N entries (hp2 down)"
    hp_start 1; hp_wait_cli 1
    local hp1_t0=$SECONDS
    sleep 0.5
    local r0 r1
    r0=$(rss_kib "$HP1")
    nsx "$PY" "$TMP/hp.py" feed sock="$TMP/hp1.sock" table=bk first=0 count="$HP_RESYNC_N" pid="$HP1" \
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
        nsx "$PY" "$TMP/hp.py" wait sock="$TMP/hp2.sock" table=bk count="$HP_RESYNC_N" t0file="$TMP/t0" \
            pidfile="$TMP/hp2.pid" timeout=120 >"$TMP/hp-resync-$i.json" &
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

args=(up0="$UPTIME_BEFORE" up1="$UPTIME_AFTER" n="$HP_RESYNC_N" hpver="$HPVER" src="$TANDEM_SRC" out="$OUT")
if [[ $ONLY != haproxy ]]; then
    args+=(bench="$TMP/bench.txt" mem="$TMP/mem.txt" fig="$TMP/fig.txt" want_t=1)
fi
if [[ $ONLY != tandem ]]; then
    args+=(lag="$TMP/hp-lag.json" insert="$TMP/hp-insert.json" fill="$TMP/hp-fill.json"
           resync="$TMP/hp-resync.json" rss="$TMP/hp-rss.json" want_h=1)
fi
hp report "${args[@]}"
[[ -n $OUT ]] && log "JSON written to $OUT"
exit 0
