"""Addresses, routes, interface order, network modes, and that removal leaves nothing behind."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.net import bridge, ipam, links, model, netns, records
from tests.linux.net.conftest import container


def test_internal_network_has_no_route_out(host):
    net = bridge.ensure_network(host, model.NetworkSpec("lab_secret", internal=True))
    att = bridge.attach(host, container(host, "lab-db-1", "lab_secret"))
    ns = att.container.netns

    assert links.default_gateway(ns) is None
    reachable = [ipaddress.ip_network(r) for r in links.routes(ns)]
    assert all(r.subnet_of(ipaddress.ip_network(net.subnet)) or r.is_loopback for r in reachable)
    table = bridge.observe(host).table
    assert f'iifname "{net.bridge}" oifname != "{net.bridge}" drop' in table
    assert f"ip saddr {net.subnet} oifname != \"{net.bridge}\" masquerade" not in table


def test_default_route_goes_via_first_non_internal_network_and_interfaces_follow_priority(host):
    bridge.ensure_network(host, model.NetworkSpec("lab_secret", internal=True))
    front = bridge.ensure_network(host, model.NetworkSpec("lab_front", mtu=1400))
    att = bridge.attach(host, container(
        host, "lab-app-1",
        model.EndpointSpec("lab_secret"),
        model.EndpointSpec("lab_front", priority=10),
    ))

    inside = links.observe(att.container.netns)
    assert [(e.ifname, e.network) for e in att.endpoints] == [("eth0", "lab_front"), ("eth1", "lab_secret")]
    assert inside["eth0"].mtu == 1400 and inside["eth1"].mtu == 1500
    assert links.default_gateway(att.container.netns) == front.gateway


def test_static_address_and_mac_are_honoured_and_never_shared(host):
    bridge.ensure_network(host, model.NetworkSpec("lab_net", subnet="10.77.0.0/24", gateway="10.77.0.254"))
    att = bridge.attach(host, container(
        host, "lab-dns-1", model.EndpointSpec("lab_net", ipv4="10.77.0.53", mac="02:00:00:00:00:53")))
    other = bridge.attach(host, container(host, "lab-web-1", "lab_net"))

    eth0 = links.observe(att.container.netns)["eth0"]
    assert eth0.addresses == ("10.77.0.53/24",)
    assert links.default_gateway(att.container.netns) == "10.77.0.254"
    assert other.endpoints[0].ipv4 == "10.77.0.1"
    with pytest.raises(bridge.NetworkError, match="10.77.0.53 is used by lab-dns-1"):
        bridge.attach(host, container(host, "lab-copy-1", model.EndpointSpec("lab_net", ipv4="10.77.0.53")))
    assert not netns.exists(netns.path(host.run_dir, "lab-copy-1"))
    assert [lease.owner for lease in ipam.observe(host.state_root)["lab_net"].leases] == ["lab-web-1", "lab-dns-1"]


def test_attach_twice_changes_nothing(host):
    bridge.ensure_network(host, model.NetworkSpec("lab_net"))
    spec = container(host, "lab-web-1", "lab_net")
    first = bridge.attach(host, spec)
    before = bridge.observe(host)

    again = bridge.attach(host, spec)

    assert again == first
    after = bridge.observe(host)
    assert (after.links, after.table, after.pools) == (before.links, before.table, before.pools)


def test_network_modes_none_host_and_shared(host):
    bridge.ensure_network(host, model.NetworkSpec("lab_net"))
    main = bridge.attach(host, container(host, "lab-web-1", "lab_net"))
    alone = bridge.attach(host, container(host, "lab-batch-1", mode="none"))
    on_host = bridge.attach(host, model.ContainerNet("lab-probe-1", None, mode="host", dns=("127.0.0.53",)))
    sidecar = bridge.attach(host, model.ContainerNet("lab-side-1", main.container.netns, mode="netns"))
    by_service = bridge.attach(host, model.ContainerNet("lab-log-1", None, mode="service:web"))
    by_name = bridge.attach(host, model.ContainerNet("lab-mon-1", None, mode="container:lab-batch-1"))

    assert list(links.observe(alone.container.netns)) == ["lo"]
    assert on_host.endpoints == () and sidecar.endpoints == ()
    assert on_host.container.netns == host.netns
    assert by_service.container.netns == main.container.netns
    assert by_name.container.netns == alone.container.netns
    with pytest.raises(bridge.NetworkError, match="network_mode service:nope: no attached service 'nope'"):
        bridge.attach(host, model.ContainerNet("lab-x-1", None, mode="service:nope"))
    files = host.run_dir / "net" / "files"
    assert (files / "lab-probe-1" / "resolv.conf").read_text() == "nameserver 127.0.0.53\n"
    gateway = bridge.observe(host).networks["lab_net"].gateway
    assert (files / "lab-side-1" / "resolv.conf").read_text() == f"nameserver {gateway}\n"

    bridge.detach(host, "lab-side-1")
    assert netns.exists(main.container.netns)  # the sidecar only borrowed it


def test_bad_input_says_where_and_changes_nothing(host):
    with pytest.raises(bridge.NetworkError, match="services.web.networks.lab_nope: no such network"):
        bridge.attach(host, container(host, "lab-web-1", "lab_nope"))
    with pytest.raises(bridge.NetworkError, match="network lab_ext declared as external"):
        bridge.ensure_network(host, model.NetworkSpec("lab_ext", external=True))
    with pytest.raises(bridge.NetworkError, match="subnet: 10.1.2.3/24 has host bits set"):
        bridge.ensure_network(host, model.NetworkSpec("lab_bad", subnet="10.1.2.3/24"))
    with pytest.raises(bridge.NetworkError, match="networks.lab_mtu.driver_opts.mtu: 70000 is not in 68-65535"):
        bridge.ensure_network(host, model.NetworkSpec("lab_mtu", mtu=70000))
    with pytest.raises(bridge.NetworkError, match="networks: '../escape' is not a valid name"):
        bridge.ensure_network(host, model.NetworkSpec("../escape"))
    with pytest.raises(bridge.NetworkError, match="container_name: 'a/b' is not a valid name"):
        bridge.attach(host, model.ContainerNet("a/b", None, mode="none"))

    seen = bridge.observe(host)
    assert (seen.networks, seen.attachments, seen.pools, seen.table) == ({}, {}, {}, None)
    assert not netns.exists(netns.path(host.run_dir, "lab-web-1"))


def test_removal_leaves_no_namespace_link_rule_or_address(host):
    bridge.ensure_network(host, model.NetworkSpec("lab_a"))
    bridge.ensure_network(host, model.NetworkSpec("lab_b", internal=True))
    for i in (1, 2):
        bridge.attach(host, container(host, f"lab-web-{i}", "lab_a", "lab_b",
                                      ports=(model.PortMapping(80, 8080 + i),)))
    with pytest.raises(bridge.NetworkError, match="still used by lab-web-1, lab-web-2"):
        bridge.remove_network(host, "lab_a")

    bridge.detach(host, "lab-web-1")
    bridge.detach(host, "lab-web-2")
    assert bridge.remove_unused(host) == ["lab_a", "lab_b"]

    seen = bridge.observe(host)
    assert list(seen.links) == ["lo"]
    assert seen.table is None
    assert (seen.networks, seen.attachments, seen.pools) == ({}, {}, {})
    assert sorted(p.name for p in (host.run_dir / "netns").iterdir()) == ["host"]
    assert list((host.run_dir / "net" / "files").iterdir()) == []
    assert records.attachments(host.state_root) == {}


def test_external_network_is_used_but_never_removed(host):
    shared = bridge.ensure_network(host, model.NetworkSpec("proxy"))
    found = bridge.ensure_network(host, model.NetworkSpec("proxy", external=True))
    bridge.remove_network(host, "proxy", external=True)

    assert found == shared
    assert shared.bridge in bridge.observe(host).links


def test_a_restarted_agent_finds_what_it_made(host):
    bridge.ensure_network(host, model.NetworkSpec("lab_net"))
    att = bridge.attach(host, container(host, "lab-web-1", "lab_net", ports=(model.PortMapping(80, 8080),)))
    before = bridge.observe(host)
    probe = (
        "import sys, pathlib, structlog; from runtime.net import bridge, model\n"
        "structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))\n"
        "h = model.Host(sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), pathlib.Path(sys.argv[4]))\n"
        "seen = bridge.observe(h)\n"
        "print(sorted(seen.networks), sorted(seen.attachments), sorted(seen.links), seen.table is not None)\n"
        "print(seen.attachments['lab-web-1'] == bridge.attach(h, seen.attachments['lab-web-1'].container))\n"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", probe, host.agent, str(host.state_root), str(host.run_dir), str(host.netns)],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[3],
    ).stdout.splitlines()

    assert fresh == [
        f"{sorted(before.networks)} {sorted(before.attachments)} {sorted(before.links)} True",
        "True",
    ]
    assert bridge.observe(host).table == before.table
    assert att == bridge.observe(host).attachments["lab-web-1"]


def test_sweep_removes_what_no_record_accounts_for(host):
    net = bridge.ensure_network(host, model.NetworkSpec("lab_net"))
    kept = bridge.attach(host, container(host, "lab-web-1", "lab_net"))
    lost = bridge.attach(host, container(host, "lab-lost-1", "lab_net"))
    stranger_ns = netns.ensure(netns.path(host.run_dir, "stranger"))
    links.ensure_veth(host.netns, "other0", net.bridge, stranger_ns, "eth0", "172.31.0.9", 24,
                      "02:00:00:00:00:09", 1500, label="someone else")
    records.drop_attachment(host.state_root, "lab-lost-1")  # as if the agent died mid-step

    gone = bridge.sweep(host)

    assert gone == [f"link {lost.endpoints[0].host_ifname}", f"lease lab_net/{lost.endpoints[0].ipv4}"]
    seen = bridge.observe(host)
    assert {kept.endpoints[0].host_ifname, "other0", net.bridge} <= set(seen.links)
    assert [lease.owner for lease in seen.pools["lab_net"].leases] == ["lab-web-1"]
    assert seen.links[net.bridge].label == f"pcompose {host.agent} network lab_net"


def test_a_batch_of_attaches_is_published_by_one_sync(host):
    bridge.ensure_network(host, model.NetworkSpec("lab_net"))
    for i in (1, 2):
        bridge.attach(host, container(host, f"lab-web-{i}", "lab_net",
                                      ports=(model.PortMapping(80, 8080 + i),)), sync=False)
    assert "8081" not in bridge.observe(host).table

    bridge.sync_rules(host)

    table = bridge.observe(host).table
    assert "8081 : 172.16.0.2 . 80" in table and "8082 : 172.16.0.3 . 80" in table
