"""A bridge keeps the MAC it was made with while ports come and go: the containers' ARP
caches hold it as their gateway's."""

from __future__ import annotations

import subprocess

from runtime.net import links


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
