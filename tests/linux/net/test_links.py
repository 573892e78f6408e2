"""Veth pairs made in one request, and the slower paths when something is there already."""

from __future__ import annotations

import subprocess

from runtime.net import links, netns


def _veth(host, ns, address="10.98.0.2"):
    links.ensure_veth(host.netns, "pctestv0", "pctestbr0", ns, "eth0", address, 24,
                      "02:42:0a:62:00:02", 1400, label="pcompose test veth")


def _hairpin(host, ifname: str) -> bool:
    shown = subprocess.run(["nsenter", f"--net={host.netns}", "ip", "-d", "link", "show", ifname],
                           capture_output=True, text=True, check=True).stdout
    return "hairpin on" in shown


def test_a_pair_is_made_whole_and_made_again_into_a_new_namespace(host):
    links.ensure_bridge(host.netns, "pctestbr0", "10.98.0.1", 24, 1500)
    first = netns.ensure(netns.path(host.run_dir, "c1"))
    _veth(host, first)
    _veth(host, first, "10.98.0.3")  # repeated with another address: the address is replaced

    end = links.observe(host.netns)["pctestv0"]
    inside = links.observe(first)["eth0"]
    assert (end.master, end.mtu, end.up, end.label) == ("pctestbr0", 1400, True, "pcompose test veth")
    assert (inside.addresses, inside.mtu, inside.up) == (("10.98.0.3/24",), 1400, True)
    assert _hairpin(host, "pctestv0")

    # The host end left behind with its peer in another namespace: the pair is made again.
    second = netns.ensure(netns.path(host.run_dir, "c2"))
    _veth(host, second)
    assert "eth0" not in links.observe(first)
    assert links.observe(second)["eth0"].addresses == ("10.98.0.2/24",)
    assert _hairpin(host, "pctestv0")
    links.remove_link(host.netns, "pctestv0")
    links.remove_link(host.netns, "pctestbr0")


def test_the_default_route_is_set_replaced_and_removed(host):
    links.ensure_bridge(host.netns, "pctestbr0", "10.98.0.1", 24, 1500)
    ns = netns.ensure(netns.path(host.run_dir, "c1"))
    _veth(host, ns)

    links.ensure_default_route(ns, "10.98.0.1")
    links.ensure_default_route(ns, "10.98.0.1")
    assert links.default_gateway(ns) == "10.98.0.1"
    links.ensure_default_route(ns, "10.98.0.254")
    assert links.default_gateway(ns) == "10.98.0.254"
    links.ensure_default_route(ns, None)
    links.ensure_default_route(ns, None)
    assert links.default_gateway(ns) is None
    links.remove_link(host.netns, "pctestv0")
    links.remove_link(host.netns, "pctestbr0")
