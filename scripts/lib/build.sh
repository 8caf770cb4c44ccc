# Builds of the binaries the lab and benchmark scripts run (bash; source
# it after defining log and setting TMP and ROOT).

# build_tandem: TANDEM is TANDEM_BIN when set, else a build of the work
# tree into TMP; TANDEM_SRC says which, for the report. 1 (logged) when
# neither is there.
build_tandem() {
    if [[ -n ${TANDEM_BIN:-} ]]; then
        [[ -x $TANDEM_BIN ]] || { log "TANDEM_BIN=$TANDEM_BIN is not executable"; return 1; }
        TANDEM=$(cd "$(dirname "$TANDEM_BIN")" && pwd)/$(basename "$TANDEM_BIN")
        TANDEM_SRC="TANDEM_BIN=$TANDEM_BIN"
        return 0
    fi
    TANDEM=$TMP/tandem
    log "building tandem"
    go build -o "$TANDEM" ./cmd/tandem || { log "cannot build ./cmd/tandem"; return 1; }
    TANDEM_SRC="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    [[ -n $(git status --porcelain --untracked-files=no -- . 2>/dev/null) ]] && TANDEM_SRC+=" + uncommitted changes"
    return 0
}

# build_labtools [DIR]: LABTOOLS is LABTOOLS_BIN when set, else a build of
# scripts/labtools from DIR [ROOT] into TMP. 1 (logged) when neither is
# there.
build_labtools() {
    if [[ -n ${LABTOOLS_BIN:-} ]]; then
        [[ -x $LABTOOLS_BIN ]] || { log "LABTOOLS_BIN=$LABTOOLS_BIN is not executable"; return 1; }
        LABTOOLS=$(cd "$(dirname "$LABTOOLS_BIN")" && pwd)/$(basename "$LABTOOLS_BIN")
        return 0
    fi
    LABTOOLS=$TMP/labtools
    log "building labtools"
    (cd "${1:-$ROOT}" && go build -o "$LABTOOLS" ./scripts/labtools) || { log "cannot build ./scripts/labtools"; return 1; }
}
