"""Link and address changes in a namespace, as netlink announces them: which links were made,
changed or deleted, or had an address added or taken away. Only names: what changed is read
again by whoever looks (links.observe), so a lost or merged event loses nothing."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from runtime.net import links, netns

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


RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR = 16, 17, 20, 21
AF_BRIDGE = 7
IFF_UP = 1
IFLA_IFNAME = IFA_LABEL = 3
IFLA_MASTER, IFLA_LINKINFO, IFLA_INFO_KIND = 10, 18, 1
_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR_SIZE = 8  # ifaddrmsg


def link_names(data: bytes) -> set[str]:
    """The names of the links a batch of messages is about that may have drifted (address
    messages name theirs by their label, which IPv4 addresses carry). A veth that is up on a
    bridge, and the bridge's own news of its ports, say nothing of drift: making a stack
    announces hundreds of those. Parsed here for the three attributes that matter: decoding
    every attribute of every message (pyroute2) cost ~0.1 ms a message, a sixth of the
    agent's CPU while a stack of 50 came up."""
    out = set()
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, mtype = _HEADER.unpack_from(data, offset)[:2]
        if length < _HEADER.size:
            break
        body = data[offset + _HEADER.size:offset + length]
        offset += (length + 3) & ~3
        if mtype in (RTM_NEWLINK, RTM_DELLINK) and len(body) >= _IFINFO.size:
            family, _, _, flags, _ = _IFINFO.unpack_from(body)
            found = links.attrs(body, _IFINFO.size)
            if mtype == RTM_NEWLINK and (family == AF_BRIDGE or (
                    flags & IFF_UP and _nonzero(found.get(IFLA_MASTER)) and _kind(found) == "veth")):
                continue
        elif mtype in (RTM_NEWADDR, RTM_DELADDR) and len(body) >= _IFADDR_SIZE:
            found = links.attrs(body, _IFADDR_SIZE)
        else:
            continue
        name = links.text(found.get(IFLA_IFNAME, b""))  # IFA_LABEL for an address
        if name:
            out.add(name)
    return out


def _kind(attrs: dict[int, bytes]) -> str:
    info = attrs.get(IFLA_LINKINFO)
    return links.text(links.attrs(info, 0).get(IFLA_INFO_KIND, b"")) if info else ""


def _nonzero(value: bytes | None) -> bool:
    return value is not None and len(value) >= 4 and struct.unpack_from("=I", value)[0] != 0
