"""A bridge keeps the MAC it was made with while ports come and go: the containers' ARP
caches hold it as their gateway's."""

from __future__ import annotations

import dataclasses
import subprocess

from runtime.net import bridge, links, model, records


def _ip(host, *args: str) -> str:
    return subprocess.run(["nsenter", f"--net={host.netns}", "ip", *args],
                          capture_output=True, text=True, check=True).stdout


def _mac(host, ifname: str) -> str:
    return _ip(host, "-br", "link", "show", ifname).split()[2]


def test_a_bridge_keeps_its_mac_when_its_lowest_port_goes(host):
    links.ensure_bridge(host.netns, "pctestbr0", "10.98.0.1", 24, 1500)
    try:
        made = _mac(host, "pctestbr0")
        # Ports with MACs lower than any random one: a bridge that follows its ports takes them.
        for n in (1, 2):
            _ip(host, "link", "add", f"pctestv{n}", "address", f"02:00:00:00:00:0{n}",
                "type", "veth", "peer", "name", f"pctestp{n}")
            _ip(host, "link", "set", f"pctestv{n}", "master", "pctestbr0", "up")
        assert _mac(host, "pctestbr0") == made
        _ip(host, "link", "del", "pctestv1")  # a recreated container's veth goes
        assert _mac(host, "pctestbr0") == made
        links.ensure_bridge(host.netns, "pctestbr0", "10.98.0.1", 24, 1500)
        assert _mac(host, "pctestbr0") == made
    finally:
        for name in ("pctestv1", "pctestv2", "pctestbr0"):
            links.remove_link(host.netns, name)


def test_a_bridge_made_again_by_the_repair_keeps_its_mac(host):
    net = bridge.ensure_network(host, model.NetworkSpec("lab_net", subnet="10.97.0.0/24"))
    made = _mac(host, net.bridge)
    assert records.networks(host.state_root)["lab_net"].mac == made
    _ip(host, "link", "del", net.bridge)  # deleted by hand
    assert bridge.drift(host).networks == {"lab_net": f"bridge {net.bridge} missing"}
    bridge.ensure_network(host, model.NetworkSpec("lab_net", subnet="10.97.0.0/24"))  # the repair
    assert bridge.drift(host).networks == {}
    assert _mac(host, net.bridge) == made


def test_a_bridge_of_an_earlier_version_is_pinned_to_its_mac_on_start(host):
    net = bridge.ensure_network(host, model.NetworkSpec("lab_net", subnet="10.96.0.0/24"))
    # As an earlier version left it: a bridge whose MAC the kernel picks, and no MAC recorded.
    _ip(host, "link", "del", net.bridge)
    _ip(host, "link", "add", net.bridge, "type", "bridge")
    _ip(host, "addr", "add", "10.96.0.1/24", "dev", net.bridge)
    _ip(host, "link", "set", net.bridge, "up")
    records.save_network(host.state_root, dataclasses.replace(net, mac=""))
    try:
        for n in (1, 2):
            _ip(host, "link", "add", f"pctestv{n}", "address", f"02:00:00:00:00:0{n}",
                "type", "veth", "peer", "name", f"pctestp{n}")
            _ip(host, "link", "set", f"pctestv{n}", "master", net.bridge, "up")
        assert _mac(host, net.bridge) == "02:00:00:00:00:01"  # it follows its lowest port
        bridge.sweep(host)  # the agent starts
        assert records.networks(host.state_root)["lab_net"].mac == "02:00:00:00:00:01"
        _ip(host, "link", "del", "pctestv1")  # that port's container is recreated
        assert _mac(host, net.bridge) == "02:00:00:00:00:01"
        _ip(host, "link", "del", net.bridge)
        bridge.ensure_network(host, model.NetworkSpec("lab_net", subnet="10.96.0.0/24"))
        assert _mac(host, net.bridge) == "02:00:00:00:00:01"
    finally:
        for name in ("pctestv1", "pctestv2"):
            links.remove_link(host.netns, name)
