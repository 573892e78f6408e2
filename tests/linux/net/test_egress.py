"""Egress of non-internal networks is masqueraded behind the host; the default pool keeps clear
of the host's own routes. All traffic stays inside namespaces the test made."""

from __future__ import annotations

import ipaddress
import socket
import sys

from runtime.net import bridge, links, model, netns
from tests.linux.net.conftest import LAN_HOST, container

WHO_ASKED = (
    "import socket\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',7000))\n"
    "while True:\n d,a=s.recvfrom(512);s.sendto(a[0].encode(),a)\n"
)


def ask_who(ns, address: str) -> str | None:
    """Send to the LAN client's echo and return the source address it saw."""
    sock = netns.socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.3)
    try:
        for _ in range(20):  # the echo process may still be starting
            sock.sendto(b"?", (address, 7000))
            try:
                return sock.recv(64).decode()
            except socket.timeout:
                continue
    finally:
        sock.close()
    return None


def test_egress_is_masqueraded_behind_the_host(host, procs, lan_client):
    procs.start(lan_client, [sys.executable, "-c", WHO_ASKED])
    bridge.ensure_network(host, model.NetworkSpec("out_default"))
    att = bridge.attach(host, container(host, "out-app-1", "out_default"))

    assert ask_who(att.container.netns, "192.0.2.2") == LAN_HOST


def test_default_subnet_avoids_the_hosts_routes(host):
    links.ensure_bridge(host.netns, "lan0", "172.16.7.1", 24, 1500)
    links.ensure_bridge(host.netns, "lan1", "172.17.0.1", 16, 1500)

    net = bridge.ensure_network(host, model.NetworkSpec("out_default"))

    assert net.subnet == "172.18.0.0/16"
    assert not ipaddress.ip_network(net.subnet).overlaps(ipaddress.ip_network("172.16.7.0/24"))
