# Process helpers shared by the benchmark scripts (source it; bash only).
# They act only on PIDs the calling script started and keeps in PIDS.

# stop_pid PID: TERM, up to 3 s, then KILL; only PIDs we started.
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
    return 0
}

# forget_pid PID: drop PID from PIDS (after stopping it).
forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# wait_for SECONDS CMD...: poll CMD every WAIT_STEP seconds [0.05] until it
# succeeds; 1 when SECONDS pass first.
wait_for() {
    local limit=$1; shift
    local end=$(( $(date +%s%N) + limit * 1000000000 ))
    while :; do
        "$@" && return 0
        (( $(date +%s%N) > end )) && return 1
        sleep "${WAIT_STEP:-0.05}"
    done
}

# set_nice PID: every thread of PID to PROXY_NICE [0] (Tandem raises its
# own priority; benchmarks put every proxy on the same footing).
set_nice() {
    local t
    for t in /proc/"$1"/task/*; do
        renice -n "${PROXY_NICE:-0}" -p "${t##*/}" >/dev/null 2>&1 || true
    done
}

# lab_session NAME: TMP (a new folder /tmp/NAME.XXXXXX), PIDS, and an EXIT
# trap that stops our PIDs, tears the lab $P down and removes TMP (the
# demo and the pair figures).
lab_session() {
    TMP=$(mktemp -d "/tmp/$1.XXXXXX")
    PIDS=()
    trap lab_session_end EXIT
}

lab_session_end() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    scripts/lab.sh -p "$P" down >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
