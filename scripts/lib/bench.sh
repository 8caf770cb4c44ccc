# Shared by the benchmark scripts (bash; source it after setting BENCH,
# the script's name in its messages): messages, the options they all take,
# range checks, and the results (per metric and target, one value a run,
# in RES/METRIC.TARGET) as medians, ratios and JSON.

OUT=""   # -o: JSON results
KEEP=0   # --keep: keep the work folder
FAILED=0 # a run without its figure

# usage: the script's header from "# Usage:" up to "# Env:".
usage() { sed -n '/^# Usage:/,/^# Env:/{/^# Env:/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
die() { echo "$BENCH: $*" >&2; exit 1; }
log() { echo "$BENCH: $*" >&2; }

# bench_opt ARGS...: takes the option at the head of ARGS that every
# benchmark knows (-o FILE into OUT, --only LIST into ONLY, --keep,
# -h/--help) and sets SHIFT to the words it took; 1 for another option.
bench_opt() {
    case $1 in
        -o) [[ $# -ge 2 ]] || usage; OUT=$2; SHIFT=2 ;;
        --only) [[ $# -ge 2 ]] || usage; ONLY=$2; SHIFT=2 ;;
        --only=*) ONLY=${1#--only=}; SHIFT=1 ;;
        --keep) KEEP=1; SHIFT=1 ;;
        -h|--help) usage ;;
        *) return 1 ;;
    esac
}

# num VAR LO HI [WHY]: dies unless $VAR is a whole number in LO..HI.
num() { [[ ${!1} =~ ^[0-9]+$ && ${!1} -ge $2 && ${!1} -le $3 ]] || die "$1 must be $2..$3${4:+ ($4)}"; }

# bench_started: UPTIME_BEFORE, and the machine in the log.
bench_started() {
    UPTIME_BEFORE=$(uptime)
    log "machine: $(nproc) CPUs, $(uname -r); uptime: $UPTIME_BEFORE"
}

# bench_results: RES, where record keeps the runs' figures.
bench_results() {
    RES=$TMP/results
    mkdir -p "$RES"
}

# record METRIC TARGET VALUE: one run's figure.
record() { echo "$3" >>"$RES/$1.$2"; }

# fail MESSAGE: a run without its figure; the exit status will say so.
fail() { log "$*"; FAILED=1; }

# stats FILE: "median min max n" of its values ("- - - 0" when none).
stats() {
    [[ -s $1 ]] || { echo "- - - 0"; return; }
    sort -g "$1" | awk '{ v[NR] = $1 } END {
        n = NR; med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        printf "%s %s %s %d\n", med, v[1], v[n], n }'
}

# median METRIC TARGET
median() { stats "$RES/$1.$2" | awk '{print $1}'; }

# ratio A B: A/B to two places, or "-" when either is missing or B is 0.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}

# uptimes: the report's lines with the uptime (load) before and after.
uptimes() {
    echo "uptime before: $UPTIME_BEFORE"
    echo "uptime after:  $UPTIME_AFTER"
}

# write_json FUNC: with -o, FUNC's output (the results as JSON) becomes
# OUT, whole or not at all.
write_json() {
    [[ -n $OUT ]] || return 0
    "$1" >"$OUT.tmp" && mv "$OUT.tmp" "$OUT"
    log "results written to $OUT"
}

# json_ok: true when every run produced its figure.
json_ok() { if [[ $FAILED -eq 0 ]]; then echo true; else echo false; fi; }

# uptimes_results_json METRIC...: "uptime_before":..,"uptime_after":..,
# "results":{..} with results_json of the metrics.
uptimes_results_json() {
    printf '"uptime_before":%s,"uptime_after":%s,"results":{' "$(json_str "$UPTIME_BEFORE")" "$(json_str "$UPTIME_AFTER")"
    results_json "$@"
    printf '}'
}

# json_str S: S as a JSON string.
json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }

# results_json METRIC...: "METRIC":{"TARGET":{"median":..,"min":..,"max":..,
# "runs":[..]},..} for each metric with results, over TARGETS, comma
# separated.
results_json() {
    local sep="" s2 m t med min max n
    for m in "$@"; do
        ls "$RES/$m".* >/dev/null 2>&1 || continue
        printf '%s"%s":{' "$sep" "$m"; sep=","
        s2=""
        for t in "${TARGETS[@]}"; do
            [[ -s $RES/$m.$t ]] || continue
            read -r med min max n < <(stats "$RES/$m.$t")
            printf '%s"%s":{"median":%s,"min":%s,"max":%s,"runs":[%s]}' "$s2" "$t" "$med" "$min" "$max" \
                "$(paste -sd, "$RES/$m.$t")"
            s2=","
        done
        printf '}'
    done
}
