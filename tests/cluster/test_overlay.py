"""Overlay networks across simulated hosts: agents in a cluster (a real etcd), each in a network
namespace of its own joined by an underlay of MTU 1400; a stack on each host joins a cluster
network made by `network create -d overlay` as `external: true`, and its containers reach and
resolve the other hosts' containers by name."""

from __future__ import annotations

import json
import re

from tests.cluster.overlay_hosts import Hosts, cluster_hosts  # noqa: F401 (fixture)
from tests.support import waiting

WEB = """
services:
  web:
    image: busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo hello from {host} > /www/index.html && dd if=/dev/zero of=/www/big bs=1024 count=1024 2>/dev/null && exec httpd -f -p 80 -h /www"]
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

    b.stack.write(WEB.format(host="b", net="mesh"))
    b.pc("up", "-d")
    a.stack.write(CLIENT.format(net="mesh"))
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
    b.stack.write(WEB.format(host="b", net="mesh").replace(
        "networks: [mesh]", "networks: [mesh]\n  other:\n    image: busybox:latest\n"
        "    command: [sleep, '3600']\n    networks: [other]") + "  other: {external: true}\n")
    b.pc("up", "-d")
    assert b.sh("other", f"ping -c 1 -W 2 {web_ip}", check=False).returncode != 0
    local_ip = address(a, "lonely", f"{a.stack.project}_local")
    assert b.sh("web", f"ping -c 1 -W 2 {local_ip}", check=False).returncode != 0
    assert b.sh("web", f"ping -c 1 -W 2 {address(a, 'client', 'mesh')}").returncode == 0
