"""The pure parts of runtime.net.vxlan: names, VTEP MACs and addresses, MTU, the nft texts and
what a spec or a peer list may not say."""

from __future__ import annotations

import pytest

from runtime.net import vxlan


def spec(**kw) -> vxlan.OverlaySpec:
    base = {"network": "mesh", "vni": 4097, "node": "n1", "subnet": "10.240.1.0/24",
            "cidr": "10.240.0.0/16", "underlay_ip": "198.18.0.1", "underlay_dev": "eth0",
            "mtu": 1350}
    return vxlan.OverlaySpec(**{**base, **kw})


def test_names_addresses_and_macs_are_derived():
    s = spec()
    assert s.device.startswith("pcx") and len(s.device) == 15
    assert s.bridge.startswith("pco") and len(s.bridge) == 15
    assert s.device != spec(vni=4098).device
    assert (s.vtep_ip, s.gateway) == ("10.240.1.0", "10.240.1.1")
    mac = vxlan.vtep_mac("n1", 4097)
    assert mac == s.vtep_mac == vxlan.vtep_mac("n1", 4097)  # every peer computes the same
    assert mac != vxlan.vtep_mac("n2", 4097) and mac != vxlan.vtep_mac("n1", 4098)
    assert mac.startswith("02:") and len(mac.split(":")) == 6  # locally administered, unicast


def test_mtu_is_the_smallest_underlay_less_the_encapsulation():
    assert vxlan.mtu_for([1500, 1400, 9000]) == 1350


@pytest.mark.parametrize("bad, words", [
    ({"subnet": "10.241.1.0/24"}, "is not inside 10.240.0.0/16"),
    ({"subnet": "10.240.1.0/31"}, "smaller than a /30"),
    ({"vni": 0}, "VNI 0 is not in 1-16777215"),
    ({"vni": 1 << 24}, "is not in 1-16777215"),
    ({"port": 0}, "UDP port 0"),
    ({"mtu": 40}, "MTU 40"),
    ({"underlay_ip": "nope"}, "overlay mesh"),
])
def test_a_bad_spec_is_refused_before_anything_is_made(bad, words):
    with pytest.raises(vxlan.OverlayError, match=words):
        vxlan.ensure_overlay(None, spec(**bad))  # refused before any netlink call


def test_peers_outside_the_network_or_on_this_hosts_subnet_are_refused():
    s = spec()
    ok = vxlan.Peer("n2", "10.240.2.0/24", "198.18.0.2", "02:AA:00:00:00:02")
    assert vxlan._wanted(s, [ok, vxlan.Peer("n1", s.subnet, "198.18.0.1", s.vtep_mac)]) == {
        "10.240.2.0/24": vxlan.Peer("n2", "10.240.2.0/24", "198.18.0.2", "02:aa:00:00:00:02")}
    for subnet in ("10.241.2.0/24", "10.240.1.0/24"):
        with pytest.raises(vxlan.OverlayError, match="apart from this host's"):
            vxlan._wanted(s, [vxlan.Peer("n3", subnet, "198.18.0.3", "02:00:00:00:00:03")])
    with pytest.raises(vxlan.OverlayError, match="claimed by both n2 and n3"):
        vxlan._wanted(s, [ok, vxlan.Peer("n3", ok.subnet, "198.18.0.3", "02:00:00:00:00:03")])


def test_member_filter_text():
    text = vxlan.render_members(4789, ["198.18.0.2", "198.18.0.10", "198.18.0.2"])
    assert text == (
        "table ip pcompose_vxlan {}\ndelete table ip pcompose_vxlan\ntable ip pcompose_vxlan {\n"
        "\tset members {\n\t\ttype ipv4_addr\n\t\telements = { 198.18.0.2, 198.18.0.10 }\n\t}\n"
        "\tchain input {\n\t\ttype filter hook input priority -5; policy accept;\n"
        "\t\tudp dport 4789 ip saddr != @members drop\n\t}\n}\n")
    assert "elements" not in vxlan.render_members(4789, [])  # no members: no VXLAN accepted
    with pytest.raises(ValueError):
        vxlan.render_members(4789, ["198.18.0.2; flush ruleset"])


def test_overlay_table_text_names_the_overlay_device_bridge_and_subnet():
    s = spec()
    text = vxlan.render_table(s)
    assert f'iifname "{s.device}" oifname != "{s.bridge}" drop' in text
    assert f'oifname "{s.device}" iifname != "{s.bridge}" drop' in text
    assert "type nat hook postrouting priority 99;" in text  # before the agent's masquerade
    assert f'oifname "{s.device}" ip saddr 10.240.1.0/24 snat ip to ip saddr' in text
    assert text.startswith("table ip pcompose_vxlan_4097 {}\ndelete table ip pcompose_vxlan_4097\n")
