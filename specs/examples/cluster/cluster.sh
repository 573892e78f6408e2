#!/usr/bin/env bash
# Three simulated hosts on one machine, joined into a cluster: an etcd on loopback, an underlay
# bridge (MTU 1400) in a namespace of its own, and per host a network namespace (pcc-h1..3,
# 198.18.0.1-3 on eth0) with its own agent, state root and run dir. An overlay network `mesh`
# spans them; host 2 serves a page (web.yaml), host 1 fetches it by name (client.yaml).
#   specs/examples/cluster/cluster.sh          up, then show the fetches from host 1
#   specs/examples/cluster/cluster.sh down     everything taken away again
# Traffic stays inside these namespaces; the machine's own network is untouched.
set -euo pipefail
cd "$(dirname "$0")/../../.."
HERE=specs/examples/cluster
PC=.venv/bin/pcompose
BASE=/var/lib/pcompose-cluster-example
RUN=/run/pcompose-cluster-example
LAN=pcc-lan

host_env() {  # the environment of host $1's CLI and agent
    echo "PCOMPOSE_ROOT=$BASE/h$1 PCOMPOSE_RUN_DIR=$RUN/h$1 PCOMPOSE_HOST_NETNS=/run/netns/pcc-h$1"
}
on() { local n=$1; shift; env $(host_env "$n") "$PC" "$@"; }

if [ "${1:-}" = "down" ]; then
    # A stack's down from any host takes it down everywhere; each agent removes its share.
    for p in example1 example2; do on 1 -p "$p" down -v -t 0 2>/dev/null || true; done
    for n in 1 2 3; do
        for _ in $(seq 1 150); do
            [ -z "$(runc --root "$RUN/h$n/runc" list -q 2>/dev/null)" ] && break
            sleep 0.2
        done
        on "$n" agent --stop 2>/dev/null || true
        ip netns del "pcc-h$n" 2>/dev/null || true
    done
    ip netns del "$LAN" 2>/dev/null || true
    if [ -f "$RUN/etcd.pid" ]; then kill "$(cat "$RUN/etcd.pid")" 2>/dev/null || true; fi
    # whatever a stopped agent left mounted under the example's dirs (none after a clean down)
    grep -oE " ($BASE|$RUN)/[^ ]+" /proc/mounts | sort -r | xargs -r -n1 umount -l
    rm -rf "$BASE" "$RUN"
    exit 0
fi

./scripts/install.sh >/dev/null
mkdir -p "$BASE" "$RUN"
if [ ! -f "$RUN/etcd.pid" ] || ! kill -0 "$(cat "$RUN/etcd.pid")" 2>/dev/null; then
    etcd --name example --data-dir "$BASE/etcd" --listen-client-urls http://127.0.0.1:23790 \
        --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 \
        --initial-advertise-peer-urls http://127.0.0.1:23800 \
        --initial-cluster example=http://127.0.0.1:23800 >"$BASE/etcd.log" 2>&1 &
    echo $! > "$RUN/etcd.pid"
    until curl -fs http://127.0.0.1:23790/health >/dev/null; do sleep 0.2; done
fi

ip netns add "$LAN" 2>/dev/null || true
ip -n "$LAN" link add ulbr mtu 1400 type bridge 2>/dev/null || true
ip -n "$LAN" link set ulbr up
for n in 1 2 3; do
    ns=pcc-h$n
    if ! ip netns list | grep -qw "$ns"; then
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        ip -n "$LAN" link add "ul$n" mtu 1400 master ulbr type veth peer name eth0 netns "$ns" mtu 1400
        ip -n "$LAN" link set "ul$n" up
        ip -n "$ns" addr add "198.18.0.$n/24" dev eth0
        ip -n "$ns" link set eth0 up
    fi
    mkdir -p "$BASE/h$n" "$RUN/h$n"
    if ! on "$n" node ls >/dev/null 2>&1; then
        env $(host_env "$n") setsid "$PC" agent --cluster http://127.0.0.1:23790 \
            --node-name "h$n" --advertise-addr "198.18.0.$n" >"$BASE/h$n/agent.out" 2>&1 &
        until on "$n" node ls >/dev/null 2>&1; do sleep 0.2; done
    fi
    if ! on "$n" images --format json 2>/dev/null | grep -q '"busybox"'; then
        work=$(mktemp -d)
        mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
        cp /bin/busybox "$work/rootfs/bin/busybox"
        for applet in $(/bin/busybox --list); do
            [ "$applet" = busybox ] || ln -sf busybox "$work/rootfs/bin/$applet"
        done
        printf 'root:x:0:0:root:/root:/bin/sh\n' > "$work/rootfs/etc/passwd"
        tar -C "$work/rootfs" -cf "$work/busybox.tar" .
        on "$n" image import "$work/busybox.tar" busybox:latest >/dev/null
        rm -rf "$work"
    fi
done

on 1 node ls
on 1 network ls --filter name=mesh --format json | grep -q mesh || on 1 network create -d overlay mesh
for n in 1 2 3; do
    until on "$n" network ls --format json | grep -q '"mesh"'; do sleep 0.2; done
done
on 2 -p example2 -f "$HERE/web.yaml" up -d --wait
on 1 -p example1 -f "$HERE/client.yaml" up -d
on 1 network inspect mesh
echo "host 1 fetches host 2's page by name:"
for _ in $(seq 1 30); do
    if on 1 -p example1 exec -T client wget -q -O - http://web/; then exit 0; fi
    sleep 1
done
echo "no answer from web yet: see $BASE/h*/agent.log" >&2
exit 1
