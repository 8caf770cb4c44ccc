# Scaffolding shared by the benchmarks that run in a network namespace of
# their own (bench-proxy.sh, bench-udp.sh). Source it after setting NS,
# KEEP and defining log and die; then call nsbench_init NAME.
# It provides TMP, PIDS, a cleanup that stops our PIDs and deletes the
# namespace, and nsx, is_proc, rss_kib, show_log, build_tandem.

. "$ROOT/scripts/lib/proc.sh"

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
    trap nsbench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

nsbench_cleanup() {
    local rc=$? p
    set +e
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    if [[ $NS_MADE -eq 1 ]]; then
        # what is left in our namespace (nginx's worker, say) is ours too
        p=$(ip netns pids "$NS" 2>/dev/null | tr '\n' ' ')
        if [[ -n $p ]]; then
            log "stopping leftovers in $NS: $p"
            kill -TERM $p 2>/dev/null; sleep 1; kill -KILL $p 2>/dev/null
        fi
        ip netns del "$NS" 2>/dev/null
    fi
    if [[ $KEEP -eq 1 || $rc -ne 0 ]]; then
        log "logs kept in $TMP"
    else
        rm -rf "$TMP"
    fi
    exit $rc
}

# nsx CMD...: run CMD in the namespace, in the foreground (a function: never
# put it in the background, $! would be a subshell, not CMD)
nsx() { ip netns exec "$NS" "$@"; }

# is_proc PID NAME: PID is a live process whose command is NAME
is_proc() { [[ $(cat "/proc/$1/comm" 2>/dev/null) == "$2" ]]; }

rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null; }

show_log() { [[ -f $1 ]] && { echo "--- tail of $1" >&2; tail -n 20 "$1" >&2; }; return 0; }

# build_tandem: TANDEM is TANDEM_BIN when set, else a build of the work
# tree; TANDEM_SRC says which, for the report.
build_tandem() {
    if [[ -n ${TANDEM_BIN:-} ]]; then
        [[ -x $TANDEM_BIN ]] || die "TANDEM_BIN=$TANDEM_BIN is not executable"
        TANDEM=$(cd "$(dirname "$TANDEM_BIN")" && pwd)/$(basename "$TANDEM_BIN")
        TANDEM_SRC="TANDEM_BIN=$TANDEM_BIN"
    else
        TANDEM=$TMP/tandem
        log "building tandem"
        go build -o "$TANDEM" ./cmd/tandem || die "cannot build ./cmd/tandem"
        TANDEM_SRC="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
        [[ -n $(git status --porcelain --untracked-files=no -- . 2>/dev/null) ]] && TANDEM_SRC+=" + uncommitted changes"
    fi
    return 0
}
