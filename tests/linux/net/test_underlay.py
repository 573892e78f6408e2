"""runtime.net.underlay on real namespaces: macvlan children of each simulated host's underlay
link reach each other and the other hosts directly; ipvlan where the kernel has it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runtime.net import bridge, model, names, netns, underlay
from tests.linux.net import simhosts

GATEWAY = "198.18.0.254"  # the underlay bridge's own address: the hosts' "router"


def kernel_has_ipvlan() -> bool:
    """Whether this kernel makes ipvlan links (CONFIG_IPVLAN), asked in a throwaway namespace."""
    probe = ("ip link add p0 type veth peer name p1 && "
             "ip link add i0 link p0 type ipvlan mode l2")
    done = subprocess.run(["unshare", "--net", "sh", "-c", probe], capture_output=True,
                          check=False)
    return done.returncode == 0


def child(cluster: simhosts.Cluster, host: int, name: str, ip: str, u: underlay.Underlay) -> Path:
    """A "container" namespace on host `host` whose eth0 is an underlay child of the host's eth0."""
    ns = cluster.ns(name)
    mac = None if u.driver == "ipvlan" else names.mac_for(ip)
    underlay.ensure_endpoint(cluster.hosts[f"h{host}"], u, ns, "eth0", ip, 24, mac, 1500, GATEWAY)
    return ns


def test_macvlan_children_on_two_hosts_reach_each_other_and_the_other_host(cluster):
    h1, h2 = cluster.host(1), cluster.host(2)
    lan = underlay.Underlay("macvlan", "eth0", "bridge")
    c1 = child(cluster, 1, "c1", "198.18.0.65", lan)
    c2 = child(cluster, 2, "c2", "198.18.0.81", lan)
    assert simhosts.ping(c1, "198.18.0.81")
    assert simhosts.ping(c2, "198.18.0.65")
    assert simhosts.ping(c1, cluster.underlay_ip(2))  # the other host's own address
    assert simhosts.ping(h2, "198.18.0.65")
    # the documented limit: a host cannot reach its own macvlan children through their parent
    assert not simhosts.ping(h1, "198.18.0.65")
    assert f"default via {GATEWAY} dev eth0" in simhosts.ip_cmd(c1, "route")
    shown = simhosts.ip_cmd(c1, "-d", "link", "show", "eth0")
    assert "macvlan mode bridge" in shown
    assert "mtu 1400" in shown  # never above the parent's MTU
    # made in the container's namespace at once: nothing of it ever shows in the host's
    host_links = {line.split(":")[1].strip().split("@")[0]
                  for line in simhosts.ip_cmd(h1, "-o", "link").splitlines()}
    assert host_links == {"lo", "eth0"}


def test_ensure_endpoint_is_safe_to_repeat(cluster):
    cluster.host(1)
    lan = underlay.Underlay("macvlan", "eth0", "bridge")
    c1 = child(cluster, 1, "c1", "198.18.0.65", lan)
    before = simhosts.ip_cmd(c1, "-o", "addr"), simhosts.ip_cmd(c1, "-o", "link")
    child(cluster, 1, "c1", "198.18.0.65", lan)
    assert (simhosts.ip_cmd(c1, "-o", "addr"), simhosts.ip_cmd(c1, "-o", "link")) == before


def test_macvlan_private_children_do_not_reach_each_other(cluster):
    cluster.host(1)
    cluster.host(2)
    private = underlay.Underlay("macvlan", "eth0", "private")
    a = child(cluster, 1, "ca", "198.18.0.65", private)
    child(cluster, 1, "cb", "198.18.0.66", private)
    assert simhosts.ping(a, cluster.underlay_ip(2))
    assert not simhosts.ping(a, "198.18.0.66")


def test_a_missing_parent_is_refused(cluster):
    cluster.host(1)
    with pytest.raises(underlay.UnderlayError, match="parent link eth9 does not exist"):
        child(cluster, 1, "c1", "198.18.0.65", underlay.Underlay("macvlan", "eth9"))


@pytest.mark.xfail(not kernel_has_ipvlan(), strict=True,
                   reason="CONFIG_IPVLAN is not set in this kernel: ipvlan links cannot be made")
@pytest.mark.parametrize("mode", ["l2", "l3"])
def test_ipvlan_children_on_two_hosts_reach_each_other(cluster, mode):
    cluster.host(1)
    cluster.host(2)
    lan = underlay.Underlay("ipvlan", "eth0", mode)
    c1 = child(cluster, 1, "c1", "198.18.0.65", lan)
    child(cluster, 2, "c2", "198.18.0.81", lan)
    assert simhosts.ping(c1, "198.18.0.81")
    assert simhosts.ping(c1, cluster.underlay_ip(2))


def test_a_container_joins_a_macvlan_network_through_the_network_runtime(cluster, unique,
                                                                          state_root):
    """bridge.attach gives a container on a macvlan network a child of the host link instead of
    a veth: an address from the network's ip_range, the underlay's gateway as default route, no
    bridge and no nft rules of its own; detach and removal leave nothing."""
    h1 = cluster.host(1)
    cluster.host(2)
    host = model.Host(agent=unique, state_root=state_root, run_dir=cluster.run_dir, netns=h1)
    spec = model.NetworkSpec(name="p_lan", subnet="198.18.0.0/24", gateway=GATEWAY,
                             ip_range="198.18.0.64/28", driver="macvlan", parent="eth0",
                             mode="bridge")
    try:
        net = bridge.ensure_network(host, spec)
        assert (net.bridge, net.driver, net.parent) == ("", "macvlan", "eth0")
        c = model.ContainerNet(container="p-web-1", netns=netns.path(cluster.run_dir, "p-web-1"),
                               service="web", endpoints=(model.EndpointSpec("p_lan"),))
        att = bridge.attach(host, c)
        assert att.endpoints[0].ipv4 == "198.18.0.64"
        assert simhosts.ping(c.netns, cluster.underlay_ip(2))
        assert "default via 198.18.0.254 dev eth0" in simhosts.ip_cmd(c.netns, "route")
        assert "macvlan mode bridge" in simhosts.ip_cmd(c.netns, "-d", "link", "show", "eth0")
        assert bridge.dns_views(host) == {}  # no embedded DNS listener on a router's address
        assert bridge.desired_rules(host).networks == ()
        # nothing for drift repair to mend: no bridge, veth or table was meant to be there
        assert bridge.drift(host) == bridge.Drift({}, {}, "")
        bridge.detach(host, "p-web-1")
        bridge.remove_network(host, "p_lan")
        assert {line.split(":")[1].strip().split("@")[0]
                for line in simhosts.ip_cmd(h1, "-o", "link").splitlines()} == {"lo", "eth0"}
    finally:
        bridge.teardown(host)


def test_a_network_on_a_missing_parent_is_refused(cluster, unique, state_root):
    host = model.Host(agent=unique, state_root=state_root, run_dir=cluster.run_dir,
                      netns=cluster.host(1))
    spec = model.NetworkSpec(name="p_lan", subnet="198.18.0.0/24", driver="macvlan", parent="eth7")
    try:
        with pytest.raises(bridge.NetworkError, match="parent link eth7 does not exist"):
            bridge.ensure_network(host, spec)
    finally:
        bridge.teardown(host)
