#!/usr/bin/env bash
# Sets up what is missing, makes a busybox image from the host's busybox-static, brings up the
# example stack (specs/examples/web) and shows it serving. By default the agent runs as a
# simulated host in a network namespace of its own (pcompose-demo), so the demo leaves the
# machine's own network untouched; `--on-host` runs it on the machine itself.
#   ./scripts/demo.sh            up, fetch the page, show ps and logs
#   ./scripts/demo.sh down       take the demo stack down again (and its namespace)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh

STACK=specs/examples/web/compose.yaml
PC=.venv/bin/pcompose
export PCOMPOSE_ROOT=${PCOMPOSE_ROOT:-/var/lib/pcompose-demo}
export PCOMPOSE_RUN_DIR=${PCOMPOSE_RUN_DIR:-/run/pcompose-demo}
NS=pcompose-demo
in_host() { "$@"; }

if [ "${1:-}" != "--on-host" ]; then
    export PCOMPOSE_HOST_NETNS=/run/netns/$NS
    in_host() { ip netns exec "$NS" "$@"; }
fi

if [ "${1:-}" = "down" ]; then
    "$PC" -f "$STACK" down -v || true
    "$PC" agent --stop
    ip netns del "$NS" 2>/dev/null || true
    exit 0
fi

if [ -n "${PCOMPOSE_HOST_NETNS:-}" ] && [ ! -e "$PCOMPOSE_HOST_NETNS" ]; then
    ip netns add "$NS"
    ip -n "$NS" link set lo up
fi

if ! "$PC" images --format json 2>/dev/null | grep -q '"busybox"'; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
    cp /bin/busybox "$work/rootfs/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$work/rootfs/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$work/rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$work/rootfs/etc/group"
    tar -C "$work/rootfs" -cf "$work/busybox.tar" .
    "$PC" image import "$work/busybox.tar" busybox:latest
fi

"$PC" -f "$STACK" up -d --wait
echo
"$PC" -f "$STACK" ps
echo
echo "\$ wget -q -O - http://127.0.0.1:${WEB_PORT:-18080}/"
in_host /bin/busybox wget -q -O - "http://127.0.0.1:${WEB_PORT:-18080}/"
sleep 6
echo
"$PC" -f "$STACK" logs --tail 2 worker
echo
echo "The stack keeps running; take it down with: ./scripts/demo.sh down"
