"""The names link and address announcements give: what may have drifted, and not the news of
making a stack (a veth up on its bridge, the bridge's own port news)."""

from __future__ import annotations

import select
import socket
import subprocess

from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from runtime.net import events, links, netns


def _read(sock: socket.socket) -> bytes:
    """Everything announced so far (the kernel queues it before the call that caused it returns)."""
    out = b""
    while select.select([sock], [], [], 0)[0]:
        out += sock.recv(1 << 20)
    return out


def _pyroute2_names(data: bytes) -> set[str]:
    """The same rule written with pyroute2's full decoding, as the parser replaced it."""
    out = set()
    for msg in MarshalRtnl().parse(data):
        info = msg.get_attr("IFLA_LINKINFO")
        kind = (info.get_attr("IFLA_INFO_KIND") if info else "") or ""
        if msg["header"]["type"] == events.RTM_NEWLINK and (msg.get("family") == events.AF_BRIDGE or (
                kind == "veth" and msg.get("flags", 0) & events.IFF_UP and msg.get_attr("IFLA_MASTER"))):
            continue
        name = msg.get_attr("IFLA_IFNAME") or msg.get_attr("IFA_LABEL")
        if name:
            out.add(name)
    return out


def test_names_of_what_may_have_drifted_and_not_of_a_veth_joining_its_bridge(host):
    sock = events.open_socket(host.netns)
    try:
        links.ensure_bridge(host.netns, "pctestbr0", "10.98.0.1", 24, 1500)
        made = _read(sock)
        assert "pctestbr0" in events.link_names(made)
        assert events.link_names(made) == _pyroute2_names(made)

        inside = netns.ensure(netns.path(host.run_dir, "c1"))
        links.ensure_veth(host.netns, "pctestv0", "pctestbr0", inside, "eth0", "10.98.0.2", 24,
                          "02:42:0a:62:00:02", 1400, label="pcompose test veth")
        joined = _read(sock)
        assert joined, "making a veth on the bridge announces something"
        assert events.link_names(joined) == _pyroute2_names(joined)
        # A veth's news of being up on its bridge names no drift (the batch above names the
        # veth anyway, by its news from before it was up): taken down, then up alone.
        subprocess.run(["nsenter", f"--net={host.netns}", "ip", "link", "set", "pctestv0",
                        "down"], check=True)
        _read(sock)
        subprocess.run(["nsenter", f"--net={host.netns}", "ip", "link", "set", "pctestv0",
                        "up"], check=True)
        upped = _read(sock)
        assert upped, "a veth going up announces it"
        assert "pctestv0" not in events.link_names(upped)
        assert events.link_names(upped) == _pyroute2_names(upped)

        # Taken by hand: the address and the link are named.
        subprocess.run(["nsenter", f"--net={host.netns}", "ip", "addr", "del", "10.98.0.1/24",
                        "dev", "pctestbr0"], check=True)
        subprocess.run(["nsenter", f"--net={host.netns}", "ip", "link", "set", "pctestv0",
                        "nomaster"], check=True)
        subprocess.run(["nsenter", f"--net={host.netns}", "ip", "link", "del", "pctestv0"],
                       check=True)
        drifted = _read(sock)
        assert {"pctestbr0", "pctestv0"} <= events.link_names(drifted)
        assert events.link_names(drifted) == _pyroute2_names(drifted)
    finally:
        sock.close()
        links.remove_link(host.netns, "pctestv0")
        links.remove_link(host.netns, "pctestbr0")


def test_truncated_or_foreign_messages_name_nothing():
    assert events.link_names(b"") == set()
    assert events.link_names(b"\x01\x00") == set()
    # An NLMSG_DONE, then a header that claims less than itself: both ignored.
    done = events._HEADER.pack(20, 3, 0, 0, 0) + b"\0\0\0\0"
    assert events.link_names(done + events._HEADER.pack(4, 16, 0, 0, 0)) == set()
