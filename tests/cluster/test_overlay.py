"""Overlay networks across simulated hosts: agents in a cluster (a real etcd), each in a network
namespace of its own joined by an underlay of MTU 1400; a stack on each host joins a cluster
network made by `network create -d overlay` as `external: true`, and its containers reach and
resolve the other hosts' containers by name."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.cluster.etcd_harness import EtcdCluster
from tests.cluster.overlay_hosts import Hosts, hosts_in
from tests.support import waiting

WEB = """
services:
  web:
    image: busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo hello from {host} > /www/index.html &&
      dd if=/dev/zero of=/www/big bs=1024 count=1024 2>/dev/null && exec httpd -f -p 80 -h /www"]
    networks: [{net}]
networks:
  {net}: {{external: true}}
"""

CLIENT = """
services:
  client:
    image: busybox:latest
    command: ["sleep", "3600"]
    networks: [{net}]
  lonely:
    image: busybox:latest
    command: ["sleep", "3600"]
    networks: [local]
networks:
  {net}: {{external: true}}
  local: {{}}
"""


@pytest.fixture
def cluster_hosts(etcd1: EtcdCluster, busybox_archive) -> Iterator[Hosts]:
    yield from hosts_in(etcd1, busybox_archive)


def fetch(host, service: str, url: str, check: bool = False):
    return host.sh(service, f"timeout 5 wget -q -O - {url}", check=check)


def served(host, service: str, url: str, text: str) -> bool:
    done = fetch(host, service, url)
    return done.returncode == 0 and text in done.stdout


def address(host, service: str, network: str) -> str:
    done = host.pc("inspect", f"{host.stack.project}-{service}-1")
    networks = json.loads(done.stdout)[0]["NetworkSettings"]["Networks"]
    return networks[network]["IPAddress"]


def test_a_service_fetches_from_another_host_by_name(cluster_hosts: Hosts):
    a, b = cluster_hosts.add(1), cluster_hosts.add(2)
    a.pc("network", "create", "-d", "overlay", "--attachable", "mesh")
    a.pc("network", "create", "-d", "overlay", "other")
    b.wait_network("mesh")
    b.wait_network("other")
    listed = a.networks()
    assert (listed["mesh"]["Driver"], listed["mesh"]["Scope"]) == ("overlay", "swarm")

    b.write(WEB.format(host="b", net="mesh"))
    b.pc("up", "-d")
    a.write(CLIENT.format(net="mesh"))
    a.pc("up", "-d")

    # By service name, resolved on A from B's endpoint in the cluster.
    waiting.wait_for(lambda: served(a, "client", "http://web/", "hello from b"), timeout=30,
                     what="A's client to fetch B's page by name")
    # The overlay's MTU is the underlay's less VXLAN's 50 bytes, in the container too, and a
    # full-size packet (DF set: ping's probes are not fragmented) and 1 MB cross.
    assert a.sh("client", "cat /sys/class/net/eth0/mtu").stdout.strip() == "1350"
    web_ip = address(b, "web", "mesh")
    assert a.sh("client", f"ping -c 1 -W 3 -s 1322 {web_ip}", check=False).returncode == 0
    size = a.sh("client", "timeout 20 wget -q -O - http://web/big | wc -c").stdout.strip()
    assert size == str(1024 * 1024)

    # Subnets per host: each has its own /24 of the network.
    shown = json.loads(a.pc("network", "inspect", "mesh").stdout)[0]
    assert shown["Scope"] == "swarm" and len(shown["Subnets"]) == 2
    assert all(re.match(r"^10\.\d+\.\d+\.0/24$", s) for s in shown["Subnets"].values())

    # Another overlay is isolated from this one; a bridge network stays on its host.
    b.write(WEB.format(host="b", net="mesh").replace(
        "networks: [mesh]", "networks: [mesh]\n  other:\n    image: busybox:latest\n"
        "    command: [sleep, '3600']\n    networks: [other]") + "  other: {external: true}\n")
    b.pc("up", "-d")
    assert b.sh("other", f"ping -c 1 -W 2 {web_ip}", check=False).returncode != 0
    local_ip = address(a, "lonely", f"{a.stack.project}_local")
    assert b.sh("web", f"ping -c 1 -W 2 {local_ip}", check=False).returncode != 0
    assert b.sh("web", f"ping -c 1 -W 2 {address(a, 'client', 'mesh')}").returncode == 0


PINGER = """
services:
  client:
    image: busybox:latest
    command: ["sleep", "3600"]
    networks: [{net}]
networks:
  {net}: {{external: true}}
"""


def mesh(hosts: Hosts, *numbers: int):
    """Hosts `numbers` in the cluster, a network mesh, web on the second host, client on the
    first (and web on every further one)."""
    made = [hosts.add(n) for n in numbers]
    made[0].pc("network", "create", "-d", "overlay", "mesh")
    for n, host in enumerate(made):
        host.wait_network("mesh")
        host.write((PINGER if n == 0 else WEB).format(host=host.name, net="mesh"))
        host.pc("up", "-d")
    return made


def peer_entries(host, other) -> list[str]:
    """What `host`'s kernel holds towards `other` on the overlay: its fdb entry (by underlay
    address), its VTEP's neighbour and the route to its subnet."""
    found = [line for line in host.bridge("fdb", "show") if f"dst {other.address}" in line]
    vteps = {line.split()[0] for line in host.kernel("route", "show", "proto", "93").splitlines()
             if " via " in line and other_subnet(other) == line.split()[0]}
    found += sorted(f"route {v}" for v in vteps)
    found += [line for line in host.kernel("neigh").splitlines()
              if line.startswith(other_subnet(other).split("/")[0] + " ")]
    return found


def other_subnet(host) -> str:
    """The subnet host serves of mesh: its bridge's connected route."""
    for line in host.kernel("route").splitlines():
        if line.startswith("10.") and "proto kernel" in line and " dev pco" in line:
            return line.split()[0]
    raise AssertionError(f"{host.name} has no overlay subnet")


def starts(host) -> list[tuple[str, str]]:
    """(container ID, when it started) of each container of the host's stack."""
    ids = host.pc("ps", "-q").stdout.split()
    shown = json.loads(host.pc("inspect", *ids).stdout)
    return sorted((c["Id"], c["State"]["StartedAt"]) for c in shown)


def resolves(host, service: str, name: str) -> bool:
    return host.sh(service, f"nslookup {name}", check=False).returncode == 0


def test_a_host_joins_while_traffic_flows_and_a_dead_host_is_cleaned_from_its_peers(
        cluster_hosts: Hosts):
    a, b = mesh(cluster_hosts, 1, 2)
    waiting.wait_for(lambda: served(a, "client", "http://web/", "hello from h2"), timeout=30,
                     what="A to fetch B's page")
    started = {h.name: starts(h) for h in (a, b)}
    web_ip = address(b, "web", "mesh")
    flow = a.stack.start("exec", "-T", "client", "ping", "-c", "40", "-i", "0.25", web_ip)

    c = cluster_hosts.add(3)
    c.wait_network("mesh")
    c.write(WEB.format(host="h3", net="mesh").replace("web:", "other:"))
    c.pc("up", "-d")
    waiting.wait_for(lambda: served(a, "client", "http://other/", "hello from h3"), timeout=30,
                     what="A to fetch C's page by name")
    assert served(c, "other", "http://web/", "hello from h2")
    out, _ = flow.communicate(timeout=60)
    assert " 0% packet loss" in out, out
    # Nothing on A and B was made again: the same containers, started as before.
    assert {h.name: starts(h) for h in (a, b)} == started

    # B dies: its agent killed, its link to the others gone.
    assert peer_entries(a, b) and peer_entries(c, b)
    b.kill_agent()
    b.kernel("link", "set", "eth0", "down")
    # Within the node lease's 10 s and 2 s more (and the check's own second), B's fdb entry,
    # neighbour and route are gone on A and C, and so are its names.
    waiting.wait_for(lambda: not peer_entries(a, b) and not peer_entries(c, b), timeout=13,
                     what="B's entries gone on A and C")
    waiting.wait_for(lambda: not resolves(a, "client", "web") and not resolves(c, "other", "web"),
                     timeout=3, what="B's names gone on A and C")
    assert served(a, "client", "http://other/", "hello from h3")


def test_an_agent_restart_keeps_every_kernel_entry_and_hand_deleted_ones_come_back(
        cluster_hosts: Hosts):
    a, b = mesh(cluster_hosts, 1, 2)
    waiting.wait_for(lambda: served(a, "client", "http://web/", "hello from h2"), timeout=30,
                     what="A to fetch B's page")
    web_ip = address(b, "web", "mesh")
    a.pc("network", "create", "-d", "overlay", "spare")
    a.wait_network("spare")
    waiting.wait_for(lambda: len(peer_entries(a, b)) == 4, timeout=10,
                     what="B's entries of both networks on A")
    subnet, entries = other_subnet(a), peer_entries(a, b)
    # mesh's kernel entries on A: B's route, neighbour and fdb entry, its unreachable route
    cidr = json.loads(a.pc("network", "inspect", "mesh").stdout)[0]["IPAM"]["Config"][0]["Subnet"]
    peer = other_subnet(b)
    marks = (f"Deleted {peer} via", f"Deleted {peer.split('/')[0]} dev",
             f"dst {b.address} self", f"unreachable {cidr}")
    logs = [a.stack.dir / "ip-monitor.log", a.stack.dir / "bridge-monitor.log"]
    monitors = []
    try:
        for tool, what, path in (("ip", ["route", "neigh"], logs[0]),
                                 ("bridge", ["fdb"], logs[1])):
            with open(path, "w") as out:
                monitors.append(subprocess.Popen([tool, "-n", a.netns, "monitor", *what],
                                                 stdout=out, stderr=subprocess.DEVNULL))
        flow = a.stack.start("exec", "-T", "client", "ping", "-c", "40", "-i", "0.25", web_ip)
        a.stop_agent()  # and back within the node lease, so that its peers keep their routes
        a.join(cluster_hosts.etcd)
        waiting.wait_for(lambda: a.log().count('"overlay.listed"') >= 2, timeout=30,
                         what="A's restarted agent to list the cluster")
        out, _ = flow.communicate(timeout=60)
        assert " 0% packet loss" in out, out
        # Nothing of the overlay's was deleted or made again: no flush at a restart.
        assert deleted(logs, marks) == []
        assert other_subnet(a) == subnet and peer_entries(a, b) == entries
        assert served(a, "client", "http://web/", "hello from h2")

        # A network the cluster removed while A's agent was away leaves A when it is back,
        # device and all.
        a.stop_agent()
        b.pc("network", "rm", "spare")
        a.join(cluster_hosts.etcd)
        waiting.wait_for(lambda: "spare" not in a.networks(), timeout=10, what="spare gone")
        assert a.kernel("-d", "link", "show", "type", "vxlan").count("pcompose-vxlan") == 1
        waiting.wait_for(lambda: served(a, "client", "http://web/", "hello from h2"),
                         timeout=30, what="A to fetch B's page again")

        # Entries deleted by hand come back within the agent's next check (every second).
        entries = peer_entries(a, b)
        remove_by_hand(a, b)
        assert peer_entries(a, b) == []
        waiting.wait_for(lambda: peer_entries(a, b) == entries, timeout=2.5,
                         what="the peer's entries repaired")
        # (and the monitors, which saw nothing deleted at the restart, saw these)
        waiting.wait_for(lambda: len(deleted(logs, marks)) >= 3, timeout=5, what="the monitors")
    finally:
        for monitor in monitors:
            monitor.terminate()
            monitor.wait()


def deleted(logs, marks: tuple[str, ...]) -> list[str]:
    return [line for path in logs for line in path.read_text().splitlines()
            if line.startswith("Deleted") and any(mark in line for mark in marks)]


def mesh_device(a, b) -> str:
    """A's VXLAN device of the network whose route to B's subnet it holds."""
    return next(line.split()[4] for line in a.kernel("route", "show", "proto", "93").splitlines()
                if line.startswith(other_subnet(b) + " "))


def remove_by_hand(a, b) -> None:
    """B's route, neighbour and fdb entry on A, deleted as an admin would."""
    device = mesh_device(a, b)
    vtep = other_subnet(b).split("/")[0]
    a.kernel("route", "del", other_subnet(b), "dev", device)
    a.kernel("neigh", "del", vtep, "dev", device)
    fdb = next(line for line in a.bridge("fdb", "show", "dev", device)
               if f"dst {b.address}" in line)
    subprocess.run(["bridge", "-n", a.netns, "fdb", "del", fdb.split()[0], "dev", device,
                    "dst", b.address], check=True)


def test_while_etcd_is_away_flows_and_names_keep_working_and_verbs_fail_fast(
        cluster_hosts: Hosts):
    a, b = mesh(cluster_hosts, 1, 2)
    waiting.wait_for(lambda: served(a, "client", "http://web/", "hello from h2"), timeout=30,
                     what="A to fetch B's page")
    entries = peer_entries(a, b)
    cluster_hosts.etcd.pause(0)
    try:
        # The last known routes and names serve on.
        assert served(a, "client", "http://web/", "hello from h2")
        assert peer_entries(a, b) == entries
        began = time.monotonic()
        done = a.pc("network", "create", "-d", "overlay", "later", check=False)
        took = time.monotonic() - began
        assert done.returncode != 0
        assert "the cluster store is unavailable" in done.stderr, done.stderr
        # etcd's deadline (4 s) and the CLI's own start; not the CLI's 15 s wait on the agent
        assert took < 8, took
        assert served(a, "client", "http://web/", "hello from h2")
    finally:
        cluster_hosts.etcd.resume(0)
    # Back: the cluster's verbs work again and both hosts converge on what they make. (A new
    # name: the refused request may still be applied when the member wakes, as etcd's are.)
    waiting.wait_for(lambda: a.pc("network", "create", "-d", "overlay", "after",
                                  check=False).returncode == 0,
                     timeout=30, what="network create to work again")
    b.wait_network("after")
    a.pc("network", "rm", "after")  # and removed, it leaves every host
    for host in (a, b):
        waiting.wait_for(lambda h=host: "after" not in h.networks(), timeout=10,
                         what=f"after gone from {host.name}")
    waiting.wait_for(lambda: served(a, "client", "http://web/", "hello from h2"), timeout=30,
                     what="A to fetch B's page after the outage")


def test_a_stack_declares_an_overlay_network_that_another_host_joins(cluster_hosts: Hosts):
    a, b = cluster_hosts.add(1), cluster_hosts.add(2)
    a.write(WEB.format(host="h1", net="mesh").replace(
        "  mesh: {external: true}", "  mesh: {driver: overlay, attachable: true}"))
    a.pc("up", "-d")
    name = f"{a.stack.project}_mesh"
    b.wait_network(name)
    assert b.networks()[name]["Scope"] == "swarm"
    b.write(PINGER.format(net="mesh").replace(
        "  mesh: {external: true}", f"  mesh: {{external: true, name: {name}}}"))
    b.pc("up", "-d")
    waiting.wait_for(lambda: served(b, "client", "http://web/", "hello from h1"), timeout=30,
                     what="B to fetch A's page over A's stack's network")
    # A's stack is converged as declared: the network stays its own (labels kept beside it).
    assert a.networks()[name]["Labels"].count(f"com.docker.compose.project={a.stack.project}") == 1

    # The stack that declared it takes it out of the cluster at its down, once B's
    # containers left it; every host then lets it go.
    b.pc("down", "-t", "0")
    a.pc("down", "-t", "0")
    for host in (a, b):
        waiting.wait_for(lambda h=host: name not in h.networks(), timeout=30,
                         what=f"{name} gone from {host.name}")
