#!/usr/bin/env bash
# Builds dist/tandem_VERSION_ARCH.deb with dpkg-deb: the binary, the
# systemd unit, example configs, shell completions and a man page per
# command (generated from the command's own help by cobra).
# Usage: scripts/package-deb.sh [VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${1:-0.1.0}
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
ROOT=$(mktemp -d /tmp/tandem-deb.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT

command -v dpkg-deb >/dev/null || { echo "package-deb: dpkg-deb missing (apt-get install -y dpkg)" >&2; exit 1; }

mkdir -p "$ROOT/DEBIAN" "$ROOT/usr/bin" "$ROOT/lib/systemd/system" \
    "$ROOT/usr/lib/sysusers.d" "$ROOT/usr/lib/sysctl.d" \
    "$ROOT/usr/share/doc/tandem/examples" "$ROOT/usr/share/man/man1" \
    "$ROOT/usr/share/bash-completion/completions" "$ROOT/usr/share/zsh/vendor-completions"

CGO_ENABLED=0 GOARCH=$ARCH go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o "$ROOT/usr/bin/tandem" ./cmd/tandem
install -m 0644 configs/tandem.service "$ROOT/lib/systemd/system/tandem.service"
# The unit runs as the system user tandem (group tandem: node.api_group's
# default readers of the control socket).
cat >"$ROOT/usr/lib/sysusers.d/tandem.conf" <<'SYSUSERS'
u tandem - "Tandem load-balancer node" /nonexistent /usr/sbin/nologin
SYSUSERS
# The unit's ProtectKernelTunables keeps the node from setting this itself:
# a reload that replaces a TCP listener hands its queued connections over.
cat >"$ROOT/usr/lib/sysctl.d/60-tandem.conf" <<'SYSCTL'
net.ipv4.tcp_migrate_req = 1
SYSCTL
install -m 0644 configs/lb1.yaml configs/lb2.yaml configs/example-full.yaml "$ROOT/usr/share/doc/tandem/examples/"
install -m 0644 README.md "$ROOT/usr/share/doc/tandem/README.md"
install -m 0644 LICENSE "$ROOT/usr/share/doc/tandem/copyright"
"$ROOT/usr/bin/tandem" completion bash >"$ROOT/usr/share/bash-completion/completions/tandem"
"$ROOT/usr/bin/tandem" completion zsh >"$ROOT/usr/share/zsh/vendor-completions/_tandem"
"$ROOT/usr/bin/tandem" man "$ROOT/usr/share/man/man1"
gzip -9n "$ROOT"/usr/share/man/man1/*.1

cat >"$ROOT/DEBIAN/control" <<CONTROL
Package: tandem
Version: $VERSION
Architecture: $ARCH
Maintainer: Tandem developers <tandem@localhost>
Section: net
Priority: optional
Depends: iproute2
Description: active/passive high-availability load-balancer pair
 Two Linux boxes with matching configs elect a master that holds the
 virtual IPs and proxies TCP connections to health-checked server pools,
 with sticky sessions replicated to the peer. tandem status shows both.
CONTROL
cat >"$ROOT/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if command -v systemd-sysusers >/dev/null; then
        systemd-sysusers tandem.conf
    elif ! getent passwd tandem >/dev/null; then
        adduser --system --group --no-create-home --home /nonexistent tandem
    fi
    if [ -x /lib/systemd/systemd-sysctl ]; then
        /lib/systemd/systemd-sysctl 60-tandem.conf || true
    fi
    mkdir -p /etc/tandem
    if [ ! -e /etc/tandem/cluster.key ]; then
        umask 077
        /usr/bin/tandem keygen >/etc/tandem/cluster.key
        echo "tandem: wrote a new cluster key to /etc/tandem/cluster.key: copy the same key to the peer"
    fi
    # The node runs as tandem: it reads its config and key through the
    # group; nobody else may read the key.
    chgrp tandem /etc/tandem /etc/tandem/cluster.key
    chmod 0750 /etc/tandem
    chmod 0640 /etc/tandem/cluster.key
    echo "tandem: write /etc/tandem/tandem.yaml (mode 0640, group tandem; examples in /usr/share/doc/tandem/examples), then: systemctl enable --now tandem"
    echo "tandem: members of the tandem group may read the control socket (node.api_group: tandem); node.api_admin_group may act"
fi
POSTINST
chmod 0755 "$ROOT/DEBIAN/postinst"

mkdir -p dist
OUT=dist/tandem_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group --build "$ROOT" "$OUT" >/dev/null
echo "package-deb: $OUT"
dpkg-deb --info "$OUT" | sed -n '1,12p'
