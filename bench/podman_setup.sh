#!/usr/bin/env bash
# Sets up the peer for bench/bench_compose.py --tool podman: Debian's podman, podman-compose 1.6.0
# in its own venv (bench/.podman-venv) and /etc/containers/containers.conf for runc + cgroupfs.
#
#   bash bench/podman_setup.sh          install (safe to run again)
#   bash bench/podman_setup.sh --undo   put containers.conf back as it was, remove the venv
#
# The Debian packages stay installed on --undo: removing them is the machine owner's call.
set -euo pipefail
cd "$(dirname "$0")/.."

CONF=/etc/containers/containers.conf
BACKUP=/etc/containers/containers.conf.pcompose-bench-backup
MARKER="# Written by pcompose bench/podman_setup.sh; --undo restores the previous file."
VENV=bench/.podman-venv
PODMAN_COMPOSE_VERSION=1.6.0

ours() { [ -f "$CONF" ] && head -n1 "$CONF" | grep -qxF "$MARKER"; }

undo() {
    if ours; then
        rm -f "$CONF"
        echo "removed $CONF"
    fi
    if [ -f "$BACKUP" ]; then
        mv "$BACKUP" "$CONF"
        echo "restored $CONF from $BACKUP"
    fi
    rm -rf "$VENV"
}

install() {
    if ! dpkg-query -W -f='${Status}' podman 2>/dev/null | grep -q "install ok installed"; then
        echo "installing Debian package: podman"
        apt-get update -qq
        # Recommends would pull slirp4netns, fuse-overlayfs and buildah: rootful runs need none.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman >/dev/null
    fi

    if [ -f "$CONF" ] && ! ours; then
        if [ -e "$BACKUP" ]; then
            echo "error: $CONF is not ours and $BACKUP already exists; resolve by hand" >&2
            exit 1
        fi
        mv "$CONF" "$BACKUP"
        echo "backed up $CONF to $BACKUP"
    fi
    # runc and cgroupfs so that both tools drive the same runtime the same way; the ulimits stay
    # within this host's hard nofile limit (20000), above which `runc create` fails.
    cat >"$CONF" <<EOF
$MARKER
[containers]
log_driver = "k8s-file"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[network]
network_backend = "netavark"
EOF

    if ! "$VENV/bin/podman-compose" --version 2>/dev/null | grep -q "$PODMAN_COMPOSE_VERSION"; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q "podman-compose==$PODMAN_COMPOSE_VERSION"
    fi
    podman --version
    "$VENV/bin/podman-compose" --version | grep -i podman-compose
}

case "${1:-}" in
    --undo) undo ;;
    "") install ;;
    *) echo "usage: $0 [--undo]" >&2; exit 2 ;;
esac
