"""Bridges, veth pairs, addresses, routes and MTU through pyroute2; every call is safe to repeat."""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import os
import socket
import struct
from pathlib import Path

import structlog
from pyroute2 import NetlinkError

from runtime.net import netns

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True)
class Link:
    """A link as netlink shows it."""

    ifname: str
    kind: str
    mtu: int
    master: str | None
    addresses: tuple[str, ...]
    up: bool
    label: str = ""


def _index(ipr, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def _made_index(ipr, ifname: str) -> int:
    """The index of a link just made or found: one gone again meanwhile is an error here."""
    index = _index(ipr, ifname)
    if index is None:
        raise LookupError(f"link {ifname} vanished while it was being set up")
    return index


def _addresses(ipr, index: int) -> set[str]:
    return {
        f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
        for a in ipr.get_addr(index=index, family=2)
    }


def _set_addresses(ipr, index: int, wanted: set[str]) -> None:
    have = _addresses(ipr, index)
    for cidr in have - wanted:
        ip, plen = cidr.split("/")
        ipr.addr("del", index=index, address=ip, prefixlen=int(plen))
    for cidr in wanted - have:
        ip, plen = cidr.split("/")
        ipr.addr("add", index=index, address=ip, prefixlen=int(plen))


@netns.on_worker
def ensure_bridge(
    host_ns: Path | None, name: str, gateway: str, prefixlen: int, mtu: int, label: str = "",
    mac: str = "",
) -> str:
    """A bridge `name` that is up, has `gateway/prefixlen` as its only address, `mtu`, and
    the fixed MAC `mac` ("": a new random one, or the one an existing bridge has now);
    `label` goes into its alias so that what made it can find it again. Returns its MAC,
    for the caller to record and pass again when the bridge must be made anew."""
    ipr = netns.route(host_ns)
    index = _index(ipr, name)
    if index is None:
        # A MAC of its own, as docker gives its bridges: one left to the kernel follows the
        # lowest of its ports' MACs, so a container's veth going (a recreate, a scale down)
        # can change the gateway's MAC under the other containers' ARP caches, and their
        # DNS and egress go unanswered until the neighbour entry is probed again. One made
        # again (deleted by hand, repaired) takes the recorded one: the same caches hold it.
        address = mac or _random_mac()
        ipr.link("add", ifname=name, kind="bridge", mtu=mtu, address=address)
        index = _made_index(ipr, name)
        log.info("bridge.created", bridge=name, gateway=gateway, mac=address)
    else:
        have = _mac(ipr, index)
        address = mac or have
        if address != have or not mac:
            # Setting the address, even to the one it has, makes the kernel keep it from
            # then on: a bridge made before bridges had a MAC of their own still follows its
            # ports; it is pinned to the MAC its containers have cached now.
            ipr.link("set", index=index, address=address)
            if address != have:
                log.info("bridge.mac_restored", bridge=name, mac=address, was=have)
    ipr.link("set", index=index, mtu=mtu, state="up", **({"ifalias": label} if label else {}))
    _set_addresses(ipr, index, {f"{gateway}/{prefixlen}"})
    # DNAT of 127.0.0.1 to a container needs loopback sources to be routable out of the bridge.
    netns.sysctl(host_ns, f"net.ipv4.conf.{name}.route_localnet", "1")
    netns.sysctl(host_ns, "net.ipv4.ip_forward", "1")
    return address


@netns.on_worker
def pin_mac(host_ns: Path | None, name: str) -> str:
    """Fix bridge `name`'s MAC at the one it has now (the kernel keeps an address that was
    set, even to its own value) and return it."""
    ipr = netns.route(host_ns)
    index = _made_index(ipr, name)
    mac = _mac(ipr, index)
    ipr.link("set", index=index, address=mac)
    log.info("bridge.mac_pinned", bridge=name, mac=mac)
    return mac


def _mac(ipr, index: int) -> str:
    return str(ipr.get_links(index)[0].get_attr("IFLA_ADDRESS"))


def _random_mac() -> str:
    """A locally administered unicast MAC (not 02:42:..., which containers' leases use)."""
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    if octets[:2] == b"\x02\x42":
        octets[1] ^= 0x01
    return ":".join(f"{o:02x}" for o in octets)


@netns.on_worker
def remove_link(ns: Path | None, name: str) -> None:
    """Delete a link (a veth's peer goes with it); a missing one is success."""
    try:
        netns.route(ns).link("del", ifname=name)
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:
            raise
        return
    log.info("link.removed", link=name)


@netns.on_worker
def ensure_veth(
    host_ns: Path | None,
    host_ifname: str,
    bridge: str,
    container_ns: Path,
    ifname: str,
    address: str,
    prefixlen: int,
    mac: str,
    mtu: int,
    label: str = "",
) -> None:
    """A veth from `bridge` into `container_ns` named `ifname` with one address, MAC and MTU;
    `label` goes into the host end's alias."""
    inner = netns.route(container_ns)
    ipr = netns.route(host_ns)
    master = _index(ipr, bridge)
    pair = dict(ifname=host_ifname, kind="veth", mtu=mtu, master=master, state="up",
                peer={"ifname": ifname, "net_ns_fd": str(container_ns), "mtu": mtu, "address": mac})
    # Nearly every call makes a new pair: ask for it at once and look closer only if one exists.
    made = _add(ipr, pair)
    if not made and _index(inner, ifname) is None:
        # Half a pair (its peer elsewhere, maybe in a namespace the kernel is taking down):
        # start again; a removal racing the kernel's is fine.
        remove_link(host_ns, host_ifname)
        made = _add(ipr, pair, exist_ok=False)
    if made:
        log.info("veth.created", link=host_ifname, peer=ifname, netns=str(container_ns))
    alias = {"ifalias": label} if label else {}
    # br_netfilter DNATs bridged packets: a container reaching its own published port needs its
    # packet sent back out of the port it came in on (hairpin: bridge port mode 1).
    if made:  # a bridge port from birth: its alias and hairpin go in one request
        ipr.link("set", ifname=host_ifname, kind="bridge_slave", mode=1, **alias)
    else:
        ipr.link("set", ifname=host_ifname, master=master, mtu=mtu, state="up", **alias)
        ipr.brport("set", ifname=host_ifname, mode=1)
    peer = _made_index(inner, ifname)
    inner.link("set", index=peer, address=mac, mtu=mtu, state="up")
    if made:
        inner.addr("add", index=peer, address=address, prefixlen=prefixlen)
    else:
        _set_addresses(inner, peer, {f"{address}/{prefixlen}"})


@netns.on_worker
def enslave(host_ns: Path | None, ifname: str, bridge: str, mtu: int) -> None:
    """Put an existing veth end back on `bridge` (up, hairpin), as ensure_veth leaves it: a
    bridge deleted and made again lost its ports, which kept their peers and addresses."""
    ipr = netns.route(host_ns)
    ipr.link("set", ifname=ifname, master=_index(ipr, bridge), mtu=mtu, state="up")
    ipr.brport("set", ifname=ifname, mode=1)


def _add(ipr, link: dict, exist_ok: bool = True) -> bool:
    """Add `link`; False if one of that name exists already (and `exist_ok`)."""
    try:
        ipr.link("add", **link)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST or not exist_ok:
            raise
        return False
    return True


@netns.on_worker
def ensure_default_route(ns: Path, gateway: str | None) -> None:
    """The namespace's default route goes via `gateway` (None: there is none)."""
    ipr = netns.route(ns)
    if gateway:
        ipr.route("replace", dst="0.0.0.0/0", gateway=gateway)
        return
    try:
        ipr.route("del", dst="0.0.0.0/0")
    except NetlinkError as exc:
        if exc.code != errno.ESRCH:
            raise


@netns.on_worker
def routes(ns: Path | None) -> list[str]:
    """Destinations of the namespace's own routes (the default route left out)."""
    out = []
    ipr = netns.route(ns)
    for table in (254, 255):
        for r in ipr.get_routes(family=2, table=table):
            dst = r.get_attr("RTA_DST")
            if dst and r["dst_len"]:
                out.append(str(ipaddress.ip_network(f"{dst}/{r['dst_len']}", strict=False)))
    return sorted(set(out))


@netns.on_worker
def default_gateway(ns: Path) -> str | None:
    ipr = netns.route(ns)
    for r in ipr.get_routes(family=2, table=254):
        if r["dst_len"] == 0:
            return r.get_attr("RTA_GATEWAY")
    return None


def observe(ns: Path | None) -> dict[str, Link]:
    """Every link of the namespace, by name. Read by two netlink dumps parsed here for the
    few attributes a Link has: the agent looks at every link on each pass, and decoding
    every attribute of a hundred links (pyroute2) costs ten times as much."""
    sock = netns.socket(ns, socket.AF_NETLINK, socket.SOCK_RAW)
    try:
        raw_links = _dump(sock, RTM_GETLINK, struct.pack("=BxHiII", 0, 0, 0, 0, 0))
        raw_addrs = _dump(sock, RTM_GETADDR, struct.pack("=BBBBI", socket.AF_INET, 0, 0, 0, 0))
    finally:
        sock.close()
    addrs: dict[int, list[str]] = {}
    for body in raw_addrs:
        _, prefixlen, _, _, index = struct.unpack_from("=BBBBI", body)
        found = attrs(body, 8)
        if IFA_ADDRESS in found:
            ip = socket.inet_ntoa(found[IFA_ADDRESS][:4])
            addrs.setdefault(index, []).append(f"{ip}/{prefixlen}")
    parsed = []
    for body in raw_links:
        _, _, index, flags, _ = struct.unpack_from("=BxHiII", body)
        parsed.append((index, flags, attrs(body, 16)))
    by_index = {index: text(a.get(IFLA_IFNAME, b"")) for index, _, a in parsed}
    out = {}
    for index, flags, a in parsed:
        name = by_index[index]
        info = attrs(a[IFLA_LINKINFO], 0) if IFLA_LINKINFO in a else {}
        master = struct.unpack("=I", a[IFLA_MASTER][:4])[0] if IFLA_MASTER in a else None
        out[name] = Link(
            ifname=name,
            kind=text(info.get(IFLA_INFO_KIND, b"")),
            mtu=struct.unpack("=I", a[IFLA_MTU][:4])[0] if IFLA_MTU in a else 0,
            master=by_index.get(master) if master is not None else None,
            addresses=tuple(sorted(addrs.get(index, ()))),
            up=bool(flags & 1),
            label=text(a.get(IFLA_IFALIAS, b"")),
        )
    return out


RTM_GETLINK, RTM_GETADDR = 18, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_IFALIAS = 3, 4, 10, 18, 20
IFLA_INFO_KIND = 1
IFA_ADDRESS = 1
_HEADER = struct.Struct("=IHHII")


def _dump(sock: socket.socket, kind: int, body: bytes) -> list[bytes]:
    """The bodies of every message a dump request of `kind` answers with."""
    sock.send(_HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
              + body)
    out: list[bytes] = []
    while True:
        data = sock.recv(1 << 20)
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, mtype, _, _, _ = _HEADER.unpack_from(data, offset)
            if mtype == NLMSG_DONE:
                return out
            if mtype == NLMSG_ERROR:
                code = -struct.unpack_from("=i", data, offset + _HEADER.size)[0]
                raise OSError(code, f"netlink dump {kind}: {os.strerror(code)}")
            out.append(data[offset + _HEADER.size:offset + length])
            offset += (length + 3) & ~3
            if length == 0:
                break


def attrs(data: bytes, offset: int) -> dict[int, bytes]:
    """The route attributes of a netlink message body from `offset` on, by type (nested ones
    left as bytes)."""
    out = {}
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return out


def text(value: bytes) -> str:
    """A NUL-terminated netlink string attribute."""
    return value.split(b"\0", 1)[0].decode(errors="replace")
