#!/usr/bin/env bash
# Installs the Debian packages that Tandem's lab, tests, benchmarks and demo
# need, only when something is missing. Safe to run repeatedly.
#
# Usage: scripts/deps.sh [EXTRA_PACKAGE...]
#
# Before installing anything it makes sure /usr/sbin/policy-rc.d exits 101,
# so packages that ship services (nginx, keepalived, slapd, exim4) do not start them: tests
# start every server themselves, inside a lab namespace, with a config in a
# temporary folder. An existing policy-rc.d is left alone.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

if [[ $(id -u) -ne 0 ]]; then
    echo "deps.sh: must run as root (apt-get install)" >&2
    exit 1
fi

# package -> a command it provides (empty: check with dpkg only)
declare -A probe=(
    [iproute2]=ip
    [nginx]=nginx
    [socat]=socat
    [curl]=curl
    [keepalived]=keepalived
    [procps]=pgrep
    [psmisc]=fuser
    [wrk]=wrk
    [dnsmasq-base]=dnsmasq
    [bind9-dnsutils]=dig
    [freeradius]=freeradius
    [freeradius-utils]=radclient
    [python3]=python3
    [nftables]=nft
    [slapd]=slapd
    [ldap-utils]=ldapsearch
    [exim4-daemon-light]=exim4
    [nghttp2-client]=h2load
    [chromium]=chromium
)
pkgs=(iproute2 nginx socat curl keepalived procps psmisc wrk dnsmasq-base bind9-dnsutils freeradius freeradius-utils python3 nftables
    slapd ldap-utils exim4-daemon-light chromium "$@")

installed() {
    local pkg=$1 cmd=${probe[$1]:-}
    if [[ -n $cmd ]] && command -v "$cmd" >/dev/null 2>&1; then
        return 0
    fi
    dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'
}

missing=()
for p in "${pkgs[@]}"; do
    installed "$p" || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "deps.sh: all present: ${pkgs[*]}"
    exit 0
fi

if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# written by tandem scripts/deps.sh: do not start services on install\nexit 101\n' \
        >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    echo "deps.sh: wrote /usr/sbin/policy-rc.d (exit 101)"
fi

echo "deps.sh: installing: ${missing[*]}"
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"

for p in "${missing[@]}"; do
    if ! installed "$p"; then
        echo "deps.sh: $p still missing after install" >&2
        exit 1
    fi
done
echo "deps.sh: done"
