"""The embedded DNS server as containers see it: replicas rotate, aliases, links and hostnames
resolve, other names go to the configured upstream (a fake on loopback), TCP works too."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from runtime.net import bridge, dns, model, netns
from tests.linux.net.conftest import container


async def ask(ns, server: str, name: str, qtype: str = "A", tcp: bool = False) -> DNSRecord:
    """One query from inside `ns`, as a resolver in the container would send it."""
    packet = DNSRecord.question(name, qtype).pack()
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    sock = netns.socket(ns, socket.AF_INET, kind)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        if tcp:
            await loop.sock_connect(sock, (server, 53))
            await loop.sock_sendall(sock, struct.pack("!H", len(packet)) + packet)
            size = struct.unpack("!H", await loop.sock_recv(sock, 2))[0]
            data = await loop.sock_recv(sock, size)
        else:
            await loop.sock_connect(sock, (server, 53))
            await loop.sock_sendall(sock, packet)
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 2)
    finally:
        sock.close()
    return DNSRecord.parse(data)


def addresses(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]


@pytest.fixture
async def stack(host, dns_server):
    net = bridge.ensure_network(host, model.NetworkSpec("blog_default"))
    bridge.ensure_network(host, model.NetworkSpec("blog_other"))
    web = [bridge.attach(host, container(host, f"blog-web-{i}", "blog_default")) for i in (1, 2, 3)]
    bridge.attach(host, container(
        host, "blog-db-1", model.EndpointSpec("blog_default", aliases=("database", "pg")), hostname="dbhost"))
    client = bridge.attach(host, container(
        host, "blog-client-1", "blog_default", links=(("db", "legacydb"),), dns_search=("corp.example",),
        dns_opt=("ndots:1",), extra_hosts=(("printer", "192.0.2.9"),)))
    bridge.attach(host, container(host, "blog-far-1", "blog_other"))
    await dns_server.update(bridge.dns_views(host))
    return net, web, client


async def test_replicas_resolve_all_in_rotating_order(host, stack):
    net, web, client = stack
    ns = client.container.netns
    replies = [addresses(await ask(ns, net.gateway, "web")) for _ in range(3)]

    everyone = sorted(w.endpoints[0].ipv4 for w in web)
    assert all(sorted(r) == everyone for r in replies)
    assert len({r[0] for r in replies}) == 3


async def test_container_names_aliases_hostnames_and_links_resolve(host, stack):
    net, _, client = stack
    ns = client.container.netns
    db_ip = bridge.observe(host).attachments["blog-db-1"].endpoints[0].ipv4

    for name in ("blog-db-1", "db", "database", "PG", "dbhost", "legacydb"):
        assert addresses(await ask(ns, net.gateway, name)) == [db_ip], name
    assert addresses(await ask(ns, net.gateway, "db", tcp=True)) == [db_ip]
    ptr = await ask(ns, net.gateway, ".".join(reversed(db_ip.split("."))) + ".in-addr.arpa", "PTR")
    assert str(ptr.rr[0].rdata) == "blog-db-1."


async def test_names_of_other_networks_do_not_resolve(host, stack):
    net, _, client = stack
    reply = await ask(client.container.netns, net.gateway, "blog-far-1")

    assert reply.header.rcode == RCODE.NXDOMAIN and reply.rr == []


async def test_a_container_of_another_network_is_refused(host, stack):
    net, _, _ = stack
    far = bridge.observe(host).attachments["blog-far-1"]
    reply = await ask(far.container.netns, net.gateway, "web")

    assert reply.header.rcode == RCODE.REFUSED and reply.rr == []


async def test_resolv_conf_and_hosts_carry_the_containers_settings(host, stack):
    net, _, client = stack
    files = host.run_dir / "net" / "files" / "blog-client-1"

    assert (files / "resolv.conf").read_text() == (
        f"nameserver {net.gateway}\nsearch corp.example\noptions ndots:1\n")
    hosts = (files / "hosts").read_text().splitlines()
    assert f"{client.endpoints[0].ipv4}\tblog-client-1" in hosts
    assert "192.0.2.9\tprinter" in hosts


class FakeUpstream(asyncio.DatagramProtocol):
    """A resolver on the machine's loopback that knows one name: the only upstreams tests use."""

    def __init__(self, address: str):
        self.address = address

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        q = DNSRecord.parse(data)
        reply = q.reply()
        if str(q.q.qname) == "outside.test.":
            reply.add_answer(RR(q.q.qname, QTYPE.A, rdata=A(self.address), ttl=5))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        self.transport.sendto(reply.pack(), addr)


@pytest.fixture
async def upstreams():
    """Two fake upstreams on 127.0.0.1: their `ip:port`s, answering outside.test differently."""
    loop = asyncio.get_running_loop()
    made = [await loop.create_datagram_endpoint(lambda a=a: FakeUpstream(a), local_addr=("127.0.0.1", 0))
            for a in ("192.0.2.80", "192.0.2.81")]
    try:
        yield [f"127.0.0.1:{t.get_extra_info('sockname')[1]}" for t, _ in made]
    finally:
        for t, _ in made:
            t.close()


async def test_other_names_go_to_the_agents_upstream_or_the_containers_own(host, upstreams):
    server = dns.Server(host.netns, upstreams=(upstreams[0],))
    try:
        net = bridge.ensure_network(host, model.NetworkSpec("blog_default"))
        plain = bridge.attach(host, container(host, "blog-client-1", "blog_default"))
        own = bridge.attach(host, container(host, "blog-client-2", "blog_default", dns=(upstreams[1],)))
        await server.update(bridge.dns_views(host))

        found = await ask(plain.container.netns, net.gateway, "outside.test")
        found_own = await ask(own.container.netns, net.gateway, "outside.test")
        missing = await ask(plain.container.netns, net.gateway, "nowhere.test")
    finally:
        await server.close()

    assert addresses(found) == ["192.0.2.80"]
    assert addresses(found_own) == ["192.0.2.81"]
    assert missing.header.rcode == RCODE.NXDOMAIN


async def test_views_follow_attach_and_detach(host, stack, dns_server):
    net, web, client = stack
    bridge.detach(host, "blog-web-2")
    await dns_server.update(bridge.dns_views(host))

    reply = addresses(await ask(client.container.netns, net.gateway, "web"))

    assert sorted(reply) == sorted([web[0].endpoints[0].ipv4, web[2].endpoints[0].ipv4])


async def test_a_published_port_53_does_not_take_the_embedded_dns(host, stack):
    net, _, client = stack
    bridge.attach(host, container(host, "blog-resolver-1", "blog_default", ports=(model.PortMapping(53, 53, "udp"),)))

    reply = await ask(client.container.netns, net.gateway, "web")

    assert len(addresses(reply)) == 3
