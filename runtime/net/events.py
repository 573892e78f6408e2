"""Link and address changes in a namespace, as netlink announces them: which links were made,
changed or deleted, or had an address added or taken away. Only names: what changed is read
again by whoever looks (links.observe), so a lost or merged event loses nothing."""

from __future__ import annotations

import socket
from pathlib import Path

from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from runtime.net import netns

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
NETLINK_ROUTE = 0
BUFFER = 1 << 20


def open_socket(ns: Path | None) -> socket.socket:
    """A non-blocking netlink socket in `ns` (None: here) subscribed to link and IPv4 address
    changes; it keeps listening to that namespace wherever it is read."""
    sock = netns.run_in(ns, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                                   NETLINK_ROUTE))
    try:
        # A burst (a stack of 50 coming up) must not overflow it; an overflow is reported by
        # recv as ENOBUFS, and the reader then looks at everything.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
        sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


_marshal = MarshalRtnl()


RTM_NEWLINK = 16
AF_BRIDGE = 7
IFF_UP = 1


def link_names(data: bytes) -> set[str]:
    """The names of the links a batch of messages is about that may have drifted (address
    messages name theirs by their label, which IPv4 addresses carry). A veth that is up on a
    bridge, and the bridge's own news of its ports, say nothing of drift: making a stack
    announces hundreds of those."""
    out = set()
    for msg in _marshal.parse(data):
        if msg["header"]["type"] == RTM_NEWLINK and (msg.get("family") == AF_BRIDGE or (
                _kind(msg) == "veth" and msg.get("flags", 0) & IFF_UP
                and msg.get_attr("IFLA_MASTER"))):
            continue
        name = msg.get_attr("IFLA_IFNAME") or msg.get_attr("IFA_LABEL")
        if name:
            out.add(name)
    return out


def _kind(msg) -> str:
    info = msg.get_attr("IFLA_LINKINFO")
    return (info.get_attr("IFLA_INFO_KIND") if info else "") or ""
