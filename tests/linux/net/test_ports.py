"""Published ports answer from another namespace, from the host's own 127.0.0.1, from the
container itself (hairpin), over tcp and udp."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest

from runtime.net import bridge, model, netns, ports
from tests.linux.net.conftest import LAN_HOST, container, fetch, httpd, until_fetched

UDP_ECHO = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',int(sys.argv[1])))\n"
    "while True:\n d,a=s.recvfrom(512);s.sendto(b'echo:'+d,a)\n"
)


@pytest.fixture
def web(host, procs, tmp_path):
    bridge.ensure_network(host, model.NetworkSpec("shop_default"))
    published = ports.parse("8080:80") + ports.parse("127.0.0.1:8081:80") + ports.parse("9000:9000/udp")
    att = bridge.attach(host, container(host, "shop-web-1", "shop_default", ports=published))
    httpd(procs, att.container.netns, tmp_path / "www", "shop\n")
    procs.start(att.container.netns, [sys.executable, "-c", UDP_ECHO, "9000"])
    return att


async def test_published_port_answers_another_namespace(host, procs, lan_client, web):
    assert await until_fetched(procs, lan_client, f"http://{LAN_HOST}:8080/") == (0, "shop\n")


async def test_port_bound_to_loopback_is_not_published_on_other_addresses(host, procs, lan_client, web):
    assert await until_fetched(procs, host.netns, "http://127.0.0.1:8081/") == (0, "shop\n")

    rc, body = await fetch(procs, lan_client, f"http://{LAN_HOST}:8081/", timeout=2)

    assert rc != 0 and body == ""


async def test_published_port_answers_the_hosts_loopback(host, procs, web):
    assert await until_fetched(procs, host.netns, "http://127.0.0.1:8080/") == (0, "shop\n")


async def test_container_reaches_its_own_published_port(host, procs, lan_client, web):
    sibling = bridge.attach(host, container(host, "shop-worker-1", "shop_default"))

    assert await until_fetched(procs, web.container.netns, f"http://{LAN_HOST}:8080/") == (0, "shop\n")
    assert await until_fetched(procs, sibling.container.netns, f"http://{LAN_HOST}:8080/") == (0, "shop\n")


async def test_udp_port_is_published(host, lan_client, web):
    sock = netns.socket(lan_client, socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.5)
    reply = None
    try:
        for _ in range(20):  # the echo process may still be starting
            sock.sendto(b"ping", (LAN_HOST, 9000))
            try:
                reply = sock.recv(512)
                break
            except socket.timeout:
                await asyncio.sleep(0.1)
    finally:
        sock.close()

    assert reply == b"echo:ping"


async def test_removed_container_is_no_longer_published(host, procs, lan_client, web):
    assert await until_fetched(procs, lan_client, f"http://{LAN_HOST}:8080/") == (0, "shop\n")

    bridge.detach(host, "shop-web-1")

    rc, body = await fetch(procs, lan_client, f"http://{LAN_HOST}:8080/", timeout=2)
    assert rc != 0 and body == ""
    assert "8080" not in (bridge.observe(host).table or "")


def test_a_host_port_is_published_once(host, web):
    with pytest.raises(bridge.NetworkError, match="services.copy.ports: host port 8080/tcp is already allocated"):
        bridge.attach(host, container(host, "shop-copy-1", "shop_default", ports=ports.parse("8080:81")))

    assert "shop-copy-1" not in bridge.observe(host).attachments


async def test_a_port_without_host_port_gets_one_that_answers(host, procs, lan_client, web, tmp_path):
    att = bridge.attach(host, container(host, "shop-admin-1", "shop_default", ports=ports.parse("80")))
    httpd(procs, att.container.netns, tmp_path / "admin", "admin\n")
    port = att.container.ports[0].published

    assert port in ports.EPHEMERAL
    assert await until_fetched(procs, lan_client, f"http://{LAN_HOST}:{port}/") == (0, "admin\n")
    assert bridge.attach(host, container(host, "shop-admin-1", "shop_default", ports=ports.parse("80"))) == att
