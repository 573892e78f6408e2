"""runtime.net.vxlan on real namespaces: simulated hosts joined by an underlay bridge of MTU 1400,
one overlay (or two) across them, a "container" namespace per host on the overlay's bridge."""

from __future__ import annotations

import dataclasses
import errno
import socket
import subprocess
from pathlib import Path

import pytest

from runtime.net import bridge, model, netns, vxlan
from tests.linux.net import simhosts
from tests.support import waiting


def peer(cluster: simhosts.Cluster, n: int, vni: int = 100, cidr: str = "10.240.0.0/16") -> vxlan.Peer:
    s = cluster.spec(n, vni, cidr)
    return vxlan.Peer(s.node, s.subnet, s.underlay_ip, s.vtep_mac)


def overlay(cluster: simhosts.Cluster, count: int, vni: int = 100, cidr: str = "10.240.0.0/16"):
    """The overlay on hosts 1..count (made if missing), each with every other host as a peer."""
    specs = {}
    for n in range(1, count + 1):
        if f"h{n}" not in cluster.hosts:
            cluster.host(n)
        specs[n] = cluster.spec(n, vni, cidr)
        vxlan.ensure_overlay(cluster.hosts[f"h{n}"], specs[n])
    for n, spec in specs.items():
        vxlan.sync_peers(cluster.hosts[f"h{n}"], spec,
                         [peer(cluster, m, vni, cidr) for m in specs])
    return specs


def udp_probe(src: Path, dst: Path, dst_ip: str, size: int) -> int:
    """Send one UDP datagram of `size` payload bytes with DF set from `src` to `dst_ip` (in
    `dst`); the number of bytes that arrived (0: none within 3 s)."""
    server = netns.socket(dst, socket.AF_INET, socket.SOCK_DGRAM)
    client = netns.socket(src, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        server.bind((dst_ip, 9999))
        server.settimeout(3)
        client.setsockopt(socket.IPPROTO_IP, simhosts.IP_MTU_DISCOVER,
                          simhosts.IP_PMTUDISC_DO)
        client.sendto(b"x" * size, (dst_ip, 9999))
        try:
            return len(server.recv(65535))
        except TimeoutError:
            return 0
    finally:
        server.close()
        client.close()


def test_containers_on_two_hosts_reach_each_other_with_full_size_packets(cluster):
    specs = overlay(cluster, 2)
    c1, ip1 = cluster.container(1, specs[1], "c1")
    c2, ip2 = cluster.container(2, specs[2], "c2")
    assert simhosts.ping(c1, ip2) and simhosts.ping(c2, ip1)

    mtu = specs[1].mtu
    assert mtu == simhosts.UNDERLAY_MTU - 50
    # The largest datagram that fits the overlay MTU crosses with DF set (encapsulated it fills
    # the underlay's 1400 bytes exactly); one byte more is refused, not silently dropped.
    assert udp_probe(c1, c2, ip2, mtu - 28) == mtu - 28
    with pytest.raises(OSError) as refused:
        udp_probe(c1, c2, ip2, mtu - 27)
    assert refused.value.errno == errno.EMSGSIZE

    h1 = cluster.hosts["h1"]
    shown = simhosts.ip_cmd(h1, "-d", "link", "show", specs[1].device)
    assert f"vxlan id 100 local {cluster.underlay_ip(1)} dev eth0" in shown
    assert f"dstport {simhosts.PORT} nolearning" in shown
    assert f"mtu {mtu}" in shown and specs[1].vtep_mac in shown
    assert f"mtu {mtu}" in simhosts.ip_cmd(h1, "link", "show", specs[1].bridge)
    assert f"mtu {mtu}" in simhosts.ip_cmd(h1, "link", "show", "vc1")
    assert "inet 10.240.1.0/32" in simhosts.ip_cmd(h1, "addr", "show", specs[1].device)
    assert vxlan.observe(h1) == {specs[1].device: "net100", specs[1].bridge: "net100"}
    routes = simhosts.ip_cmd(h1, "route", "show", "proto", str(vxlan.RTPROT))
    assert "unreachable 10.240.0.0/16" in routes
    assert f"10.240.2.0/24 via 10.240.2.0 dev {specs[1].device} onlink" in routes


def test_ensure_and_sync_are_safe_to_repeat(cluster):
    specs = overlay(cluster, 2)
    h1 = cluster.hosts["h1"]

    def state():  # the devices' indexes tell they were not made again
        names = [line.split(":")[:2] for line in simhosts.ip_cmd(h1, "-o", "link").splitlines()]
        return names, simhosts.ip_cmd(h1, "route"), simhosts.ip_cmd(h1, "neigh"), simhosts.bridge_cmd(h1, "fdb")

    before = state()
    vxlan.ensure_overlay(h1, specs[1])
    assert vxlan.sync_peers(h1, specs[1], [peer(cluster, 1), peer(cluster, 2)]) == []
    assert state() == before


def test_removing_a_peer_removes_its_entries_and_leaves_the_others(cluster):
    specs = overlay(cluster, 3)
    c1, _ = cluster.container(1, specs[1], "c1")
    _, ip2 = cluster.container(2, specs[2], "c2")
    _, ip3 = cluster.container(3, specs[3], "c3")
    assert simhosts.ping(c1, ip3)
    h1, dev = cluster.hosts["h1"], specs[1].device

    changes = vxlan.sync_peers(h1, specs[1], [peer(cluster, 2)])
    # route first, then neighbour, then fdb entry
    assert [c.split()[0] for c in changes] == ["route", "neigh", "fdb"]
    p3 = peer(cluster, 3)
    assert "10.240.3.0/24" not in simhosts.ip_cmd(h1, "route")
    assert "10.240.3.0 " not in simhosts.ip_cmd(h1, "neigh", "show", "dev", dev)
    assert p3.vtep_mac not in simhosts.bridge_cmd(h1, "fdb", "show", "dev", dev)
    assert "10.240.2.0/24 via 10.240.2.0" in simhosts.ip_cmd(h1, "route")
    assert simhosts.ping(c1, ip2)
    assert not simhosts.ping(c1, ip3)  # caught by the unreachable route, not sent out of the host


@pytest.mark.parametrize("what", ["route", "neigh", "fdb"])
def test_an_entry_deleted_by_hand_is_restored_by_the_next_sync(cluster, what):
    specs = overlay(cluster, 2)
    c1, _ = cluster.container(1, specs[1], "c1")
    _, ip2 = cluster.container(2, specs[2], "c2")
    h1, dev, p2 = cluster.hosts["h1"], specs[1].device, peer(cluster, 2)
    if what == "route":
        simhosts.ip_cmd(h1, "route", "del", "10.240.2.0/24")
    elif what == "neigh":
        simhosts.ip_cmd(h1, "neigh", "del", "10.240.2.0", "dev", dev)
    else:
        simhosts.bridge_cmd(h1, "fdb", "del", p2.vtep_mac, "dev", dev, "dst", p2.underlay_ip)
    changes = vxlan.sync_peers(h1, specs[1], [p2])
    assert [c.split()[0] for c in changes] == [what]
    assert simhosts.ping(c1, ip2)


def test_two_overlays_are_isolated(cluster):
    a = overlay(cluster, 2, vni=100, cidr="10.240.0.0/16")
    b = overlay(cluster, 2, vni=200, cidr="10.241.0.0/16")
    c1a, _ = cluster.container(1, a[1], "c1a")
    _, ip2a = cluster.container(2, a[2], "c2a")
    c1b, _ = cluster.container(1, b[1], "c1b")
    _, ip2b = cluster.container(2, b[2], "c2b")
    assert simhosts.ping(c1a, ip2a) and simhosts.ping(c1b, ip2b)
    assert not simhosts.ping(c1a, ip2b)
    assert not simhosts.ping(c1b, ip2a)


def test_member_filter_drops_vxlan_from_a_non_member(cluster):
    specs = overlay(cluster, 3)
    c1, _ = cluster.container(1, specs[1], "c1")
    _, ip2 = cluster.container(2, specs[2], "c2")
    c3, _ = cluster.container(3, specs[3], "c3")
    assert simhosts.ping(c3, ip2)  # the peers are in place: only the filter can stop it below
    h2 = cluster.hosts["h2"]
    vxlan.sync_members(h2, simhosts.PORT, [cluster.underlay_ip(1), cluster.underlay_ip(2)])
    assert simhosts.ping(c1, ip2)
    assert not simhosts.ping(c3, ip2)
    vxlan.sync_members(h2, simhosts.PORT, [cluster.underlay_ip(n) for n in (1, 2, 3)])
    assert waiting.wait_for(lambda: simhosts.ping(c3, ip2), what="host 3 admitted again", timeout=10)


def test_removing_the_overlay_leaves_nothing_of_it(cluster):
    specs = overlay(cluster, 2)
    h1 = cluster.hosts["h1"]
    vxlan.remove_overlay(h1, specs[1])
    vxlan.remove_overlay(h1, specs[1])  # again: nothing left is success
    assert vxlan.observe(h1) == {}
    assert specs[1].device not in simhosts.ip_cmd(h1, "link")
    assert specs[1].bridge not in simhosts.ip_cmd(h1, "link")
    assert "10.240." not in simhosts.ip_cmd(h1, "route")
    nft = subprocess.run(["nsenter", f"--net={h1}", "nft", "list", "tables"],
                         capture_output=True, text=True, check=True).stdout
    assert vxlan.table(specs[1]) not in nft


def test_a_device_made_differently_is_made_again_and_the_next_sync_restores_its_peers(cluster):
    specs = overlay(cluster, 2)
    c1, _ = cluster.container(1, specs[1], "c1")
    _, ip2 = cluster.container(2, specs[2], "c2")
    moved = {n: dataclasses.replace(s, port=8472) for n, s in specs.items()}
    for n, s in moved.items():
        vxlan.ensure_overlay(cluster.hosts[f"h{n}"], s)
    h1 = cluster.hosts["h1"]
    assert "dstport 8472" in simhosts.ip_cmd(h1, "-d", "link", "show", moved[1].device)
    changes = vxlan.sync_peers(h1, moved[1], [peer(cluster, 2)])
    assert [c.split()[0] for c in changes] == ["fdb", "neigh", "route"]
    vxlan.sync_peers(cluster.hosts["h2"], moved[2], [peer(cluster, 1)])
    assert simhosts.ping(c1, ip2)


def test_containers_attached_by_the_agents_network_runtime_keep_their_addresses_across_hosts(
        cluster, state_root, unique):
    """The overlay's bridge as an agent's network (bridge.ensure_network, bridge.attach: veths at
    the overlay MTU, the agent's nft table with its masquerade): a peer sees the container's own
    address, not its host's."""
    specs = overlay(cluster, 2)
    hosts, atts = [], []
    try:
        for n in (1, 2):
            s = specs[n]
            host = model.Host(agent=f"{unique}{n}", state_root=state_root / f"h{n}",
                              run_dir=cluster.run_dir / f"h{n}", netns=cluster.hosts[f"h{n}"])
            hosts.append(host)
            bridge.ensure_network(host, model.NetworkSpec(
                name="p_mesh", bridge=s.bridge, subnet=s.subnet, gateway=s.gateway, mtu=s.mtu))
            c = model.ContainerNet(container=f"p-web-{n}", service="web",
                                   netns=netns.path(host.run_dir, f"p-web-{n}"),
                                   endpoints=(model.EndpointSpec("p_mesh"),))
            atts.append(bridge.attach(host, c))
        ns1, ns2 = (a.container.netns for a in atts)
        ip1, ip2 = (a.endpoints[0].ipv4 for a in atts)
        assert f"mtu {specs[1].mtu}" in simhosts.ip_cmd(ns1, "link", "show", "eth0")
        server = netns.socket(ns2, socket.AF_INET, socket.SOCK_STREAM)
        client = netns.socket(ns1, socket.AF_INET, socket.SOCK_STREAM)
        try:
            server.bind((ip2, 7000))
            server.listen()
            server.settimeout(5)
            client.settimeout(5)
            client.connect((ip2, 7000))
            conn, (source, _) = server.accept()
            conn.close()
        finally:
            client.close()
            server.close()
        assert source == ip1
    finally:
        for host in hosts:
            bridge.teardown(host)
