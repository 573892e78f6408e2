"""Underlay networks through the CLI: two simulated hosts (each an agent in a network namespace of
its own) on one underlay bridge; a stack on each puts a container on a macvlan network whose
parent is the host's underlay link, and the containers reach each other and the other host
directly. `driver: overlay` is refused on a single host with what it needs."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from tests.e2e import conftest

UNDERLAY_MTU = 1400

STACK = """
services:
  box:
    image: busybox:latest
    command: ["sleep", "3600"]
    networks:
      lan:
        ipv4_address: {ip}
networks:
  lan:
    driver: macvlan
    driver_opts:
      parent: eth0
      macvlan_mode: bridge
    ipam:
      config:
        - subnet: 198.18.0.0/24
          gateway: 198.18.0.254
          ip_range: {ip_range}
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def underlay(stack, busybox_archive):
    """A second host beside `stack`'s, both joined to a bridge in a namespace of their own by
    their eth0 (198.18.0.1 and .2, MTU 1400): the hosts' LAN, inside the test's namespaces."""
    other = conftest.make_stack(busybox_archive, "t" + uuid.uuid4().hex[:7])
    lan = f"pce2eul{uuid.uuid4().hex[:6]}"
    try:
        ip("netns", "add", lan)
        ip("-n", lan, "link", "add", "ulbr", "mtu", str(UNDERLAY_MTU), "type", "bridge")
        ip("-n", lan, "addr", "add", "198.18.0.254/24", "dev", "ulbr")
        ip("-n", lan, "link", "set", "ulbr", "up")
        for n, host in ((1, stack.host_netns), (2, other.host_netns)):
            ip("-n", lan, "link", "add", f"ul{n}", "mtu", str(UNDERLAY_MTU), "master", "ulbr",
               "type", "veth", "peer", "name", "eth0", "netns", host, "mtu", str(UNDERLAY_MTU))
            ip("-n", lan, "link", "set", f"ul{n}", "up")
            ip("-n", host, "addr", "add", f"198.18.0.{n}/24", "dev", "eth0")
            ip("-n", host, "link", "set", "eth0", "up")
        yield other
    finally:
        try:
            conftest.remove_stack(other)
        finally:
            subprocess.run(["ip", "netns", "delete", lan], check=False, capture_output=True)


def reaches(stack, address: str) -> bool:
    done = stack.pc("exec", "-T", "box", "ping", "-c", "1", "-W", "2", address, check=False)
    return done.returncode == 0


def test_containers_on_two_hosts_share_a_macvlan_network(stack, underlay):
    stack.write(STACK.format(ip="198.18.0.70", ip_range="198.18.0.64/28"))
    underlay.write(STACK.format(ip="198.18.0.90", ip_range="198.18.0.80/28"))
    stack.pc("up", "-d", "--wait")
    underlay.pc("up", "-d", "--wait")

    assert reaches(stack, "198.18.0.90")  # the other host's container
    assert reaches(underlay, "198.18.0.70")
    assert reaches(stack, "198.18.0.2")  # the other host itself
    assert reaches(underlay, "198.18.0.1")

    shown = stack.pc("network", "ls").stdout
    assert f"{stack.project}_lan" in shown and "macvlan" in shown

    stack.pc("down", "-t", "0")
    underlay.pc("down", "-t", "0")
    assert conftest.leftovers(stack) == []
    assert conftest.leftovers(underlay) == []
    # the hosts' own links are untouched by the network's removal
    links = subprocess.run(["ip", "-n", stack.host_netns, "-o", "link"], capture_output=True,
                           text=True, check=True).stdout
    assert " eth0@" in links


def test_an_overlay_network_is_refused_on_a_single_host(stack):
    stack.write("services: {box: {image: busybox:latest, command: [sleep, '3600'], "
                "networks: [mesh]}}\nnetworks: {mesh: {driver: overlay}}\n")
    done = stack.pc("up", "-d", check=False)
    assert done.returncode != 0
    assert "driver overlay needs pcompose agent --cluster" in done.stdout + done.stderr
