"""Pure parts of runtime.net: names, ports, subnet choice, nft rendering, DNS views."""

from __future__ import annotations

from pathlib import Path

import pytest
from dnslib import RCODE, DNSRecord
from hypothesis import given, strategies as st

from runtime.net import dns, model, names, nft, ports, resolvconf
from runtime.net import ipam


@given(st.text(min_size=1, max_size=200), st.text(min_size=1, max_size=200))
def test_link_names_fit_the_kernel_and_are_stable(agent, thing):
    for name in (names.bridge(agent, thing), names.host_veth(agent, thing, "n")):
        assert len(name.encode()) <= 15
        assert name.isalnum()
    assert names.bridge(agent, thing) == names.bridge(agent, thing)


def test_link_names_differ_per_agent_and_network():
    assert len({names.bridge(a, n) for a in ("h1", "h2") for n in ("p_a", "p_b")}) == 4


def test_mac_is_derived_from_the_address():
    assert names.mac_for("172.17.0.2") == "02:42:ac:11:00:02"


@pytest.mark.parametrize("short, expected", [
    ("80", [(80, 0, "tcp", "")]),
    ("8080:80", [(80, 8080, "tcp", "")]),
    ("127.0.0.1:8081:80", [(80, 8081, "tcp", "127.0.0.1")]),
    ("0.0.0.0:53:53/udp", [(53, 53, "udp", "")]),
    ("9000-9001:90-91/udp", [(90, 9000, "udp", ""), (91, 9001, "udp", "")]),
    ("127.0.0.1::5432", [(5432, 0, "tcp", "127.0.0.1")]),
])
def test_short_port_syntax(short, expected):
    got = [(p.target, p.published, p.protocol, p.host_ip) for p in ports.parse(short)]
    assert got == expected


@pytest.mark.parametrize("short, message", [
    ("80:70000", "is not a port"),
    ("8000-8002:80-81", "differ in size"),
    ("80/sctp", "is not \\[ip:\\]"),
    ("web:80", "is not \\[ip:\\]"),
])
def test_bad_ports_say_what_is_wrong(short, message):
    with pytest.raises(ports.PortError, match=message):
        ports.parse(short, where="services.web.ports[0]")


def test_long_port_syntax():
    assert ports.expand(80, "8000", "udp", "127.0.0.1") == (model.PortMapping(80, 8000, "udp", "127.0.0.1"),)
    assert ports.expand("80", None) == (model.PortMapping(80, ports.ANY),)


def test_ports_without_a_host_port_get_a_free_one_and_keep_it():
    wanted = ports.parse("80") + ports.parse("81") + ports.parse("8080:82")
    first = ports.choose(wanted, (), {("tcp", 32768)})
    assert [p.published for p in first] == [32769, 32770, 8080]
    again = ports.choose(wanted, first, {("tcp", 32768)})
    assert again == first


def test_default_subnet_avoids_host_routes_and_taken_subnets():
    pools = (("172.16.0.0/12", 16), ("192.168.0.0/16", 20))
    assert ipam.pick_subnet(pools, [], []) == "172.16.0.0/16"
    assert ipam.pick_subnet(pools, ["172.16.0.0/16"], ["172.17.5.0/24"]) == "172.18.0.0/16"
    assert ipam.pick_subnet(pools, [], ["172.16.0.0/12"]) == "192.168.0.0/20"
    with pytest.raises(ipam.IpamError, match="no free subnet"):
        ipam.pick_subnet(pools, [], ["172.16.0.0/12", "192.168.0.0/16"])


def test_ipam_is_persisted_and_never_hands_out_an_address_twice(tmp_path: Path):
    pools = (("10.9.0.0/16", 29),)
    pool = ipam.reserve_network(tmp_path, "p_a", None, None, None, pools, [])
    assert (pool.subnet, pool.gateway) == ("10.9.0.0/29", "10.9.0.1")
    got = [ipam.allocate(tmp_path, "p_a", f"c{i}").ipv4 for i in range(5)]
    assert got == [f"10.9.0.{i}" for i in range(2, 7)]
    assert ipam.allocate(tmp_path, "p_a", "c0").ipv4 == "10.9.0.2"  # same owner, same lease
    with pytest.raises(ipam.IpamError, match="no free address"):
        ipam.allocate(tmp_path, "p_a", "c5")
    ipam.release(tmp_path, "p_a", "c1")
    assert ipam.allocate(tmp_path, "p_a", "c5").ipv4 == "10.9.0.3"
    assert ipam.reserve_network(tmp_path, "p_b", None, None, None, pools, []).subnet == "10.9.0.8/29"
    owners = [lease.owner for lease in ipam.observe(tmp_path)["p_a"].leases]
    assert owners == ["c0", "c5", "c2", "c3", "c4"]


def test_ipam_keeps_aux_addresses_free_and_needs_a_subnet_for_them(tmp_path: Path):
    ipam.reserve_network(tmp_path, "p_a", "10.1.0.0/29", None, None, (), [], ("10.1.0.2", "10.1.0.3"))
    assert ipam.allocate(tmp_path, "p_a", "c").ipv4 == "10.1.0.4"
    with pytest.raises(ipam.IpamError, match="10.1.0.3 is an aux address"):
        ipam.allocate(tmp_path, "p_a", "d", "10.1.0.3")
    with pytest.raises(ipam.IpamError, match="ipam.config: gateway, ip_range and aux_addresses need a subnet"):
        ipam.reserve_network(tmp_path, "p_b", None, "10.2.0.1", None, (("10.2.0.0/16", 24),), [])
    with pytest.raises(ipam.IpamError, match="aux_addresses: 10.9.0.1 is not inside 10.3.0.0/24"):
        ipam.reserve_network(tmp_path, "p_c", "10.3.0.0/24", None, None, (), [], ("10.9.0.1",))


def test_ipam_static_requests_are_checked(tmp_path: Path):
    ipam.reserve_network(tmp_path, "p_a", "10.1.0.0/24", "10.1.0.254", "10.1.0.128/25", (), [])
    assert ipam.allocate(tmp_path, "p_a", "dyn").ipv4 == "10.1.0.128"
    assert ipam.allocate(tmp_path, "p_a", "s", "10.1.0.5", "02:00:00:00:00:05").mac == "02:00:00:00:00:05"
    for ip, message in [("10.1.0.254", "is the gateway"), ("10.2.0.1", "not a host address"),
                        ("10.1.0.5", "is used by s"), ("10.1.0.0", "not a host address")]:
        with pytest.raises(ipam.IpamError, match=message):
            ipam.allocate(tmp_path, "p_a", "other", ip)
    with pytest.raises(ipam.IpamError, match="mac_address 02:00:00:00:00:05 is used by s"):
        ipam.allocate(tmp_path, "p_a", "other", None, "02:00:00:00:00:05")
    with pytest.raises(ipam.IpamError, match="overlaps 10.1.0.0/24"):
        ipam.reserve_network(tmp_path, "p_b", "10.1.0.0/16", None, None, (), [])
    with pytest.raises(ipam.IpamError, match="already exists with subnet 10.1.0.0/24"):
        ipam.reserve_network(tmp_path, "p_a", "10.3.0.0/24", None, None, (), [])


GOLDEN = """\
table ip pcompose_h1 {}
delete table ip pcompose_h1
table ip pcompose_h1 {
\tset bridges {
\t\ttype ifname
\t\telements = { "pcba", "pcbi" }
\t}
\tset gateways {
\t\ttype ipv4_addr
\t\telements = { 172.16.0.1, 172.17.0.1 }
\t}
\tmap publish_tcp_ip {
\t\ttype ipv4_addr . inet_service : ipv4_addr . inet_service
\t\telements = { 127.0.0.1 . 8080 : 172.16.0.2 . 80 }
\t}
\tmap publish_tcp {
\t\ttype inet_service : ipv4_addr . inet_service
\t}
\tmap publish_udp_ip {
\t\ttype ipv4_addr . inet_service : ipv4_addr . inet_service
\t}
\tmap publish_udp {
\t\ttype inet_service : ipv4_addr . inet_service
\t\telements = { 53 : 172.16.0.2 . 53, 54 : 172.16.0.3 . 53 }
\t}
\tchain publish {
\t\tip daddr @gateways meta l4proto { tcp, udp } th dport 53 return
\t\tdnat ip to ip daddr . tcp dport map @publish_tcp_ip
\t\tdnat ip to tcp dport map @publish_tcp
\t\tdnat ip to ip daddr . udp dport map @publish_udp_ip
\t\tdnat ip to udp dport map @publish_udp
\t}
\tchain prerouting {
\t\ttype nat hook prerouting priority -100; policy accept;
\t\tfib daddr type local jump publish
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tfib daddr type local jump publish
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority 100; policy accept;
\t\toifname "pcba" ip saddr 127.0.0.0/8 masquerade
\t\toifname "pcba" ip saddr 172.16.0.0/16 ct status dnat masquerade
\t\tip saddr 172.16.0.0/16 oifname != "pcba" masquerade
\t\toifname "pcbi" ip saddr 127.0.0.0/8 masquerade
\t\toifname "pcbi" ip saddr 172.17.0.0/16 ct status dnat masquerade
\t}
\tchain forward {
\t\ttype filter hook forward priority 0; policy accept;
\t\tct state established,related accept
\t\tiifname "pcbi" oifname != "pcbi" drop
\t\toifname "pcbi" iifname != "pcbi" drop
\t\tct status dnat accept
\t\tiifname "pcba" oifname "pcba" accept
\t\tiifname "pcbi" oifname "pcbi" accept
\t\tiifname @bridges oifname @bridges drop
\t}
}
"""


def test_nft_table_renders_as_one_replacing_transaction():
    a = model.Network("p_a", "pcba", "172.16.0.0/16", "172.16.0.1")
    i = model.Network("p_i", "pcbi", "172.17.0.0/16", "172.17.0.1", internal=True)
    published = (
        nft.Published("172.16.0.3", "pcba", model.PortMapping(53, 54, "udp")),
        nft.Published("172.16.0.2", "pcba", model.PortMapping(53, 53, "udp")),
        nft.Published("172.16.0.2", "pcba", model.PortMapping(80, 8080, "tcp", "127.0.0.1")),
    )
    assert nft.render(nft.Ruleset("pcompose_h1", (a, i), published)) == GOLDEN


def test_host_ports_claimed_twice_are_found():
    def pub(port, ip="", proto="tcp"):
        return nft.Published("10.0.0.2", "b", model.PortMapping(80, port, proto, ip))

    assert nft.clashes((pub(80), pub(80, proto="udp"), pub(81, "127.0.0.1"), pub(81, "127.0.0.2"))) == []
    assert nft.clashes((pub(80), pub(80, "127.0.0.1"), pub(81, "127.0.0.1"), pub(81, "127.0.0.1"))) == [
        "80/tcp", "81/tcp"]


def _att(name, service, ip, network="p_a", aliases=(), links=(), dns_servers=()):
    c = model.ContainerNet(name, None, service=service, links=links, dns=dns_servers)
    return model.Attachment(c, (model.Endpoint(name, network, "eth0", "x", ip, "m", aliases),))


def test_dns_views_rotate_replicas_and_keep_networks_apart():
    nets = [model.Network("p_a", "pcba", "10.0.0.0/24", "10.0.0.1"),
            model.Network("p_b", "pcbb", "10.0.1.0/24", "10.0.1.1")]
    atts = [_att("p-web-1", "web", "10.0.0.3"), _att("p-web-2", "web", "10.0.0.2"),
            _att("p-db-1", "db", "10.0.0.4", aliases=("pg",)),
            _att("p-app-1", "app", "10.0.0.5", links=(("db", "legacy"),), dns_servers=("127.0.0.9",)),
            _att("p-far-1", "far", "10.0.1.2", network="p_b")]
    views = dns.views(nets, atts)
    r = dns.Resolver()
    a = views["p_a"]
    assert [r.lookup(a, "10.0.0.5", "web.") for _ in range(3)] == [
        ("10.0.0.2", "10.0.0.3"), ("10.0.0.3", "10.0.0.2"), ("10.0.0.2", "10.0.0.3")]
    assert r.lookup(a, "10.0.0.5", "PG") == ("10.0.0.4",)
    assert r.lookup(a, "10.0.0.5", "legacy") == ("10.0.0.4",)
    assert r.lookup(a, "10.0.0.2", "legacy") is None  # a link is the linking container's own name
    assert r.lookup(a, "10.0.0.5", "far") is None
    assert r.lookup(views["p_b"], "10.0.1.2", "far") == ("10.0.1.2",)
    assert r.reverse(a, "4.0.0.10.in-addr.arpa.") == "p-db-1"
    assert dict(a.clients)["10.0.0.5"].upstreams == ("127.0.0.9",)


def test_resolv_conf_and_hosts_rendering():
    assert resolvconf.render_resolv(("10.0.0.1",), ("a.example",), ("ndots:2", "timeout:1")) == (
        "nameserver 10.0.0.1\nsearch a.example\noptions ndots:2 timeout:1\n")
    hosts = resolvconf.render_hosts("web", ("10.0.0.2",), (("db.local", "10.0.0.9"),))
    assert hosts.splitlines()[2:] == ["10.0.0.2\tweb", "10.0.0.9\tdb.local"]


def test_host_resolvers_are_read_from_resolv_conf(tmp_path: Path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# x\nnameserver 127.0.0.53\noptions edns0\nnameserver 10.0.0.2\n")
    assert resolvconf.host_resolvers(conf) == ("127.0.0.53", "10.0.0.2")


async def test_large_answers_are_truncated_over_udp_and_whole_over_tcp():
    net = model.Network("p_a", "pcba", "10.0.0.0/24", "10.0.0.1")
    atts = [_att(f"p-web-{i}", "web", f"10.0.0.{i + 2}") for i in range(40)]
    server = dns.Server(None)
    server.views = dns.views([net], atts)
    query = DNSRecord.question("web").pack()

    over_udp = DNSRecord.parse(await server.answer("p_a", "10.0.0.2", query, limit=512))
    over_tcp = DNSRecord.parse(await server.answer("p_a", "10.0.0.2", query))
    refused = DNSRecord.parse(await server.answer("p_a", "10.9.9.9", query))

    assert over_udp.header.tc == 1 and over_udp.rr == []
    assert len(over_tcp.rr) == 40
    assert refused.header.rcode == RCODE.REFUSED


async def test_an_internal_network_forwards_nothing():
    net = model.Network("p_i", "pcbi", "10.0.0.0/24", "10.0.0.1", internal=True)
    server = dns.Server(None, upstreams=("127.0.0.1:9",))  # would be asked if forwarding happened
    server.views = dns.views([net], [_att("p-db-1", "db", "10.0.0.2", network="p_i")])

    reply = DNSRecord.parse(await server.answer("p_i", "10.0.0.2", DNSRecord.question("example.org").pack()))

    assert reply.header.rcode == RCODE.NXDOMAIN
