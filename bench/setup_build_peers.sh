#!/usr/bin/env bash
# Installs the peers of bench/bench_build.py: Debian's buildah and docker.io (for BuildKit).
# Only the benchmark needs them; the README's set-up does not install them.
#
#   bash bench/setup_build_peers.sh
#
# docker.io's packages would start dockerd and containerd as system services (a docker0
# bridge, iptables rules): they are installed with service starts refused and left disabled.
# The benchmark runs a dockerd of its own (its own data root and socket, no bridge, no
# iptables) and stops it by PID. Safe to run again: it skips what is there.
set -euo pipefail

PACKAGES=(buildah docker.io)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "already installed: ${PACKAGES[*]}"
    exit 0
fi

# invoke-rc.d asks policy-rc.d before it starts a service: 101 means "not now"
POLICY=/usr/sbin/policy-rc.d
ours=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$POLICY"
    chmod 755 "$POLICY"
    ours=1
fi
cleanup() { if [ "$ours" = 1 ]; then rm -f "$POLICY"; fi; }
trap cleanup EXIT

echo "installing Debian packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null

if command -v systemctl >/dev/null; then
    for unit in docker.socket docker.service containerd.service; do
        systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
fi
echo "buildah: $(buildah --version)"
echo "docker: $(/usr/bin/docker --version) (dockerd is not running: the benchmark starts its own)"
