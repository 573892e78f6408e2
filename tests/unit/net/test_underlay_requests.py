"""The netlink requests underlay endpoints send, encoded and decoded as the kernel would read them
(ipvlan cannot run on this kernel: its request is checked here), and the checks of drivers/modes."""

from __future__ import annotations

import pytest
from pyroute2.iproute.linux import get_arguments_processor
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from runtime.net import underlay

RTM_NEWLINK = 16


def encoded(request: dict) -> ifinfmsg:
    """`request` as pyroute2 puts it on the wire for `link add`, parsed back."""
    proc = get_arguments_processor("link", "add", dict(request))
    msg = ifinfmsg()
    msg["header"]["type"] = RTM_NEWLINK
    for field in msg.fields:
        msg[field[0]] = proc.get_value(field[0], default=0, mode="field")
    for key, value in proc.items():
        nla = ifinfmsg.name2nla(key)
        if msg.valid_nla(nla) and value is not None:
            msg["attrs"].append([nla, value])
    msg.encode()
    out = ifinfmsg(msg.data)
    out.decode()
    return out


@pytest.mark.parametrize("mode, number", [("l2", 0), ("l3", 1)])
def test_ipvlan_request(mode, number):
    req = underlay.link_request(underlay.Underlay("ipvlan", "eth0", mode), 7, "eth1", 5,
                                "02:42:0a:00:00:02", 1400)
    msg = encoded(req)
    assert msg.get_attr("IFLA_IFNAME") == "eth1"
    assert msg.get_attr("IFLA_LINK") == 7
    assert msg.get_attr("IFLA_NET_NS_FD") == 5
    assert msg.get_attr("IFLA_MTU") == 1400
    assert msg.get_attr("IFLA_ADDRESS") is None  # an ipvlan child has its parent's MAC
    info = msg.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "ipvlan"
    assert info.get_attr("IFLA_INFO_DATA").get_attr("IFLA_IPVLAN_MODE") == number


def test_ipvlan_mode_defaults_to_l2():
    req = underlay.link_request(underlay.Underlay("ipvlan", "eth0"), 7, "eth0", 5, None, 1500)
    data = encoded(req).get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
    assert data.get_attr("IFLA_IPVLAN_MODE") == 0


@pytest.mark.parametrize("mode", ["private", "vepa", "bridge", "passthru"])
def test_macvlan_request(mode):
    req = underlay.link_request(underlay.Underlay("macvlan", "eth0", mode), 3, "eth0", 9,
                                "02:42:0a:00:00:02", 1400)
    msg = encoded(req)
    assert msg.get_attr("IFLA_ADDRESS") == "02:42:0a:00:00:02"
    assert msg.get_attr("IFLA_LINK") == 3
    info = msg.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "macvlan"
    assert info.get_attr("IFLA_INFO_DATA").get_attr("IFLA_MACVLAN_MODE") == mode


@pytest.mark.parametrize("u, words", [
    (underlay.Underlay("macvlan", ""), "needs driver_opts.parent"),
    (underlay.Underlay("macvlan", "eth0", "l2"), "macvlan_mode 'l2' is not one of bridge"),
    (underlay.Underlay("ipvlan", "eth0", "bridge"), "ipvlan_mode 'bridge' is not one of l2, l3"),
    (underlay.Underlay("overlay", "eth0"), "driver 'overlay' is not one of macvlan, ipvlan"),
])
def test_bad_underlays_are_refused(u, words):
    with pytest.raises(underlay.UnderlayError, match=words):
        underlay.check(u, "networks.lan")
