"""Flannel-style L3 VXLAN overlays: per overlay network and host a VXLAN device, a bridge with the
host's subnet, and per peer host one fdb entry, one permanent neighbour and one route, kept by
diffing the kernel against the wanted peers (replace only, never flush)."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import ipaddress
import socket
from collections.abc import Iterable
from pathlib import Path

import structlog
from pyroute2 import NetlinkError
from pyroute2.netlink.rtnl import ndmsg

from runtime.net import links, names, netns, nft

log = structlog.get_logger(__name__)

# The routes this module makes carry this protocol number, so a restarted agent tells its own
# from anyone else's without remembering them (`ip route show proto 93`).
RTPROT = 93
RTNH_F_ONLINK = 4
DEFAULT_PORT = 4789
OVERHEAD = 50  # outer IPv4 + UDP + VXLAN + inner Ethernet headers
DEVICE_PREFIX = "pcx"
BRIDGE_PREFIX = "pco"
LABEL = "pcompose-vxlan"  # not "pcompose <agent> ...": an agent's sweep must leave these alone
FDB_STATE = ndmsg.states["noarp"] | ndmsg.states["permanent"]
FDB_SELF = ndmsg.flags["self"]


class OverlayError(ValueError):
    """An overlay or peer that cannot be made as asked; nothing was changed."""


@dataclasses.dataclass(frozen=True)
class OverlaySpec:
    """One overlay network on one host.

    `subnet` is this host's share of the network's `cidr`; `mtu` is the cluster's smallest
    underlay MTU minus the VXLAN overhead, the same on every host."""

    network: str
    vni: int
    node: str
    subnet: str
    cidr: str
    underlay_ip: str
    underlay_dev: str | None = None
    port: int = DEFAULT_PORT
    mtu: int = 1450

    @property
    def device(self) -> str:
        return DEVICE_PREFIX + names.digest(self.network, str(self.vni), length=12)

    @property
    def bridge(self) -> str:
        return BRIDGE_PREFIX + names.digest(self.network, str(self.vni), length=12)

    @property
    def vtep_ip(self) -> str:
        return vtep_ip(self.subnet)

    @property
    def gateway(self) -> str:
        return str(next(ipaddress.ip_network(self.subnet).hosts()))

    @property
    def vtep_mac(self) -> str:
        return vtep_mac(self.node, self.vni)


@dataclasses.dataclass(frozen=True)
class Peer:
    """Another host of the overlay: its subnet, where its VXLAN device listens, and its MAC."""

    node: str
    subnet: str
    underlay_ip: str
    vtep_mac: str

    @property
    def vtep_ip(self) -> str:
        return vtep_ip(self.subnet)


def vtep_mac(node: str, vni: int) -> str:
    """A node's VTEP MAC in one overlay: locally administered, derived, so peers agree on it."""
    raw = hashlib.sha256(f"{node}\0{vni}".encode()).digest()[:5]
    return "02:" + ":".join(f"{b:02x}" for b in raw)


def vtep_ip(subnet: str) -> str:
    """The VXLAN device's address: the subnet's network address (flannel's choice: it is never
    handed to a container and needs no allocation)."""
    return str(ipaddress.ip_network(subnet).network_address)


def mtu_for(underlay_mtus: Iterable[int]) -> int:
    """The overlay MTU: the smallest underlay MTU of the cluster less the encapsulation."""
    return min(underlay_mtus) - OVERHEAD


def _check(spec: OverlaySpec) -> None:
    where = f"overlay {spec.network}"
    try:
        cidr = ipaddress.ip_network(spec.cidr, strict=True)
        subnet = ipaddress.ip_network(spec.subnet, strict=True)
        ipaddress.IPv4Address(spec.underlay_ip)
    except ValueError as exc:
        raise OverlayError(f"{where}: {exc}") from None
    if cidr.version != 4 or not subnet.subnet_of(cidr):  # type: ignore[arg-type]
        raise OverlayError(f"{where}: host subnet {subnet} is not inside {cidr}")
    if subnet.prefixlen > 30:
        raise OverlayError(f"{where}: host subnet {subnet} is smaller than a /30")
    if not 1 <= spec.vni < 1 << 24:
        raise OverlayError(f"{where}: VNI {spec.vni} is not in 1-16777215")
    if not 1 <= spec.port <= 65535:
        raise OverlayError(f"{where}: UDP port {spec.port} is not in 1-65535")
    if not 68 <= spec.mtu <= 65535:
        raise OverlayError(f"{where}: MTU {spec.mtu} is not in 68-65535")


def _index(ipr, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def _vxlan_attrs(ipr, index: int) -> dict:
    link = ipr.get_links(index)[0]
    info = link.get_attr("IFLA_LINKINFO")
    if info is None or info.get_attr("IFLA_INFO_KIND") != "vxlan":
        return {}
    data = info.get_attr("IFLA_INFO_DATA")
    return {name: data.get_attr(name) for name in
            ("IFLA_VXLAN_ID", "IFLA_VXLAN_LOCAL", "IFLA_VXLAN_PORT", "IFLA_VXLAN_LEARNING",
             "IFLA_VXLAN_LINK")}


@netns.on_worker
def _ensure_device(ns: Path | None, spec: OverlaySpec) -> None:
    """The VXLAN device as `spec` says; one made differently (VNI, port, local address and
    parent cannot change on a live device) is made again."""
    ipr = netns.route(ns)
    parent = None
    if spec.underlay_dev:
        parent = _index(ipr, spec.underlay_dev)
        if parent is None:
            raise OverlayError(f"overlay {spec.network}: underlay device {spec.underlay_dev} "
                               "does not exist")
    wanted = {"IFLA_VXLAN_ID": spec.vni, "IFLA_VXLAN_LOCAL": spec.underlay_ip,
              "IFLA_VXLAN_PORT": spec.port, "IFLA_VXLAN_LEARNING": 0,
              "IFLA_VXLAN_LINK": parent}
    index = _index(ipr, spec.device)
    if index is not None and _vxlan_attrs(ipr, index) != wanted:
        ipr.link("del", index=index)
        log.info("vxlan.replaced", device=spec.device, network=spec.network)
        index = None
    if index is None:
        ipr.link("add", ifname=spec.device, kind="vxlan", vxlan_id=spec.vni,
                 vxlan_local=spec.underlay_ip, vxlan_port=spec.port, vxlan_learning=0,
                 **({"vxlan_link": parent} if parent is not None else {}),
                 address=spec.vtep_mac, mtu=spec.mtu)
        index = _index(ipr, spec.device)
        log.info("vxlan.created", device=spec.device, network=spec.network, vni=spec.vni)
    if ipr.get_links(index)[0].get_attr("IFLA_ADDRESS") != spec.vtep_mac:
        # only when it differs: a new address flushes the device's neighbours, permanent or not
        ipr.link("set", index=index, address=spec.vtep_mac)
    ipr.link("set", index=index, mtu=spec.mtu, state="up", ifalias=f"{LABEL} {spec.network}")
    have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
    for ip, plen in have - {(spec.vtep_ip, 32)}:
        ipr.addr("del", index=index, address=ip, prefixlen=plen)
    if (spec.vtep_ip, 32) not in have:
        ipr.addr("add", index=index, address=spec.vtep_ip, prefixlen=32)
    # Traffic to a subnet whose host is gone fails at once instead of leaving by the default route.
    ipr.route("replace", dst=spec.cidr, type="unreachable", proto=RTPROT)


def ensure_overlay(ns: Path | None, spec: OverlaySpec) -> None:
    """The overlay on this host: its VXLAN device, its bridge with the subnet's gateway (both at
    the overlay MTU), the unreachable route for the whole network, and its nft table.
    Safe to repeat; peers are `sync_peers`'s."""
    _check(spec)
    _ensure_device(ns, spec)
    plen = ipaddress.ip_network(spec.subnet).prefixlen
    links.ensure_bridge(ns, spec.bridge, spec.gateway, plen, spec.mtu,
                        label=f"{LABEL} {spec.network}")
    nft.run(ns, render_table(spec))
    log.info("overlay.ensured", network=spec.network, subnet=spec.subnet, device=spec.device)


def table(spec: OverlaySpec) -> str:
    """The overlay's own nft table in the host namespace."""
    return f"pcompose_vxlan_{spec.vni}"


def render_table(spec: OverlaySpec) -> str:
    """The overlay's table, replaced whole. Forwarded traffic enters the VXLAN device only from
    the overlay's bridge and leaves it only to that bridge: without that the hosts' routing would
    join overlays (a container of one reaches another overlay's subnet through its host). And
    containers keep their own source address towards peers: the agent's table masquerades what
    leaves a bridge for anywhere else, and a source NAT to itself here, one priority earlier,
    settles the connection's NAT before that rule is consulted."""
    t, dev, br = table(spec), f'"{spec.device}"', f'"{spec.bridge}"'
    return (f"table ip {t} {{}}\ndelete table ip {t}\ntable ip {t} {{\n"
            "\tchain forward {\n\t\ttype filter hook forward priority -5; policy accept;\n"
            f"\t\tiifname {dev} oifname != {br} drop\n"
            f"\t\toifname {dev} iifname != {br} drop\n\t}}\n"
            "\tchain postrouting {\n\t\ttype nat hook postrouting priority 99; policy accept;\n"
            f"\t\toifname {dev} ip saddr {spec.subnet} snat ip to ip saddr\n\t}}\n}}\n")


@dataclasses.dataclass(frozen=True)
class _Kernel:
    """What the kernel holds on one VXLAN device: fdb (MAC, underlay IP) pairs, neighbours
    (address -> MAC, permanent or not) and our routes (subnet -> via)."""

    fdb: frozenset[tuple[str, str]]
    neigh: dict[str, tuple[str, bool]]
    routes: dict[str, str]


def _read(ipr, index: int) -> _Kernel:
    fdb = set()
    for entry in ipr.fdb("dump", ifindex=index):
        if entry["ifindex"] == index and entry.get_attr("NDA_DST"):
            fdb.add((entry.get_attr("NDA_LLADDR").lower(), entry.get_attr("NDA_DST")))
    neigh = {}
    for entry in ipr.get_neighbours(family=socket.AF_INET, ifindex=index):
        if entry["ifindex"] == index:
            permanent = bool(entry["state"] & ndmsg.states["permanent"])
            neigh[entry.get_attr("NDA_DST")] = ((entry.get_attr("NDA_LLADDR") or "").lower(),
                                                permanent)
    routes = {}
    for r in ipr.get_routes(family=socket.AF_INET, table=254, proto=RTPROT):
        if r.get_attr("RTA_OIF") == index and r["dst_len"]:
            routes[f"{r.get_attr('RTA_DST')}/{r['dst_len']}"] = r.get_attr("RTA_GATEWAY") or ""
    return _Kernel(frozenset(fdb), neigh, routes)


def _gone_ok(call, *args, **kwargs) -> None:
    """A removal of what is not there (any more) is success."""
    try:
        call(*args, **kwargs)
    except NetlinkError as exc:
        if exc.code not in (errno.ENOENT, errno.ESRCH, errno.ENODEV):
            raise


def _wanted(spec: OverlaySpec, peers: Iterable[Peer]) -> dict[str, Peer]:
    cidr = ipaddress.ip_network(spec.cidr)
    own = ipaddress.ip_network(spec.subnet)
    out: dict[str, Peer] = {}
    for p in peers:
        if p.node == spec.node:
            continue  # callers may hand the whole list of VTEPs, this host's own among them
        subnet = ipaddress.ip_network(p.subnet, strict=True)
        if not subnet.subnet_of(cidr) or subnet.overlaps(own):  # type: ignore[arg-type]
            raise OverlayError(f"overlay {spec.network}: peer {p.node}'s subnet {subnet} is not "
                               f"a subnet of {cidr} apart from this host's {own}")
        if str(subnet) in out:
            raise OverlayError(f"overlay {spec.network}: subnet {subnet} claimed by both "
                               f"{out[str(subnet)].node} and {p.node}")
        out[str(subnet)] = dataclasses.replace(p, vtep_mac=p.vtep_mac.lower())
    return out


@netns.on_worker
def sync_peers(ns: Path | None, spec: OverlaySpec, peers: Iterable[Peer]) -> list[str]:
    """Make the kernel's fdb, neighbours and routes on the overlay's device those of `peers`:
    stale ones go route first, then neighbour, then fdb entry; missing or different ones are
    replaced fdb first, route last, so a route never points at a VTEP the kernel cannot reach.
    Nothing is flushed: what is right stays untouched. Returns what changed."""
    wanted = _wanted(spec, peers)
    ipr = netns.route(ns)
    index = _index(ipr, spec.device)
    if index is None:
        raise OverlayError(f"overlay {spec.network}: no device {spec.device}; ensure_overlay first")
    have = _read(ipr, index)
    want_fdb = {(p.vtep_mac, p.underlay_ip) for p in wanted.values()}
    want_neigh = {p.vtep_ip: p.vtep_mac for p in wanted.values()}
    done: list[str] = []
    for dst in sorted(set(have.routes) - set(wanted)):
        _gone_ok(ipr.route, "del", dst=dst, oif=index, proto=RTPROT)
        done.append(f"route {dst} removed")
    for ip in sorted(set(have.neigh) - set(want_neigh)):
        _gone_ok(ipr.neigh, "del", ifindex=index, dst=ip)
        done.append(f"neigh {ip} removed")
    for mac, dst in sorted(have.fdb - want_fdb):
        _gone_ok(ipr.fdb, "del", ifindex=index, lladdr=mac, dst=dst)
        done.append(f"fdb {mac} {dst} removed")
    for subnet, p in sorted(wanted.items()):
        if (p.vtep_mac, p.underlay_ip) not in have.fdb:
            ipr.fdb("replace", ifindex=index, lladdr=p.vtep_mac, dst=p.underlay_ip,
                    state=FDB_STATE, flags=FDB_SELF)
            done.append(f"fdb {p.vtep_mac} {p.underlay_ip}")
        if have.neigh.get(p.vtep_ip) != (p.vtep_mac, True):
            ipr.neigh("replace", ifindex=index, dst=p.vtep_ip, lladdr=p.vtep_mac,
                      state=ndmsg.states["permanent"])
            done.append(f"neigh {p.vtep_ip} {p.vtep_mac}")
        if have.routes.get(subnet) != p.vtep_ip:
            ipr.route("replace", dst=subnet, gateway=p.vtep_ip, oif=index, flags=RTNH_F_ONLINK,
                      proto=RTPROT)
            done.append(f"route {subnet} via {p.vtep_ip}")
    if done:
        log.info("overlay.peers_synced", network=spec.network, changes=done)
    return done


@netns.on_worker
def _remove_device(ns: Path | None, spec: OverlaySpec) -> None:
    ipr = netns.route(ns)
    index = _index(ipr, spec.device)
    if index is not None:
        for dst in _read(ipr, index).routes:  # routes first, as for a peer's removal
            _gone_ok(ipr.route, "del", dst=dst, oif=index, proto=RTPROT)
    _gone_ok(ipr.route, "del", dst=spec.cidr, type="unreachable", proto=RTPROT)
    if index is not None:
        _gone_ok(ipr.link, "del", index=index)  # its neighbours and fdb entries go with it


def remove_overlay(ns: Path | None, spec: OverlaySpec) -> None:
    """Take the overlay off this host: peer routes, the device, the bridge and its rules; what is
    missing already is success. Containers still on the bridge lose their link to it."""
    _remove_device(ns, spec)
    links.remove_link(ns, spec.bridge)
    name = table(spec)
    nft.run(ns, f"table ip {name} {{}}\ndelete table ip {name}\n")
    log.info("overlay.removed", network=spec.network, device=spec.device)


@netns.on_worker
def observe(ns: Path | None) -> dict[str, str]:
    """The overlay devices and bridges in `ns`, by link name -> the network each serves (from
    the alias they were made with), so an agent finds what it made without remembering it."""
    out = {}
    for link in netns.route(ns).get_links():
        alias = link.get_attr("IFLA_IFALIAS") or ""
        name = link.get_attr("IFLA_IFNAME")
        if alias.startswith(LABEL + " ") and name.startswith((DEVICE_PREFIX, BRIDGE_PREFIX)):
            out[name] = alias[len(LABEL) + 1:]
    return out


def render_members(port: int, addresses: Iterable[str], table: str = "pcompose_vxlan") -> str:
    """The member filter as one nft transaction: VXLAN packets (UDP to `port`) are accepted only
    from the cluster members' underlay addresses. VXLAN has neither authentication nor
    encryption, so anyone else able to reach the port could inject into every overlay."""
    members = sorted({str(ipaddress.IPv4Address(a)) for a in addresses},
                     key=ipaddress.IPv4Address)
    elements = f"\t\telements = {{ {', '.join(members)} }}\n" if members else ""
    return (f"table ip {table} {{}}\ndelete table ip {table}\ntable ip {table} {{\n"
            f"\tset members {{\n\t\ttype ipv4_addr\n{elements}\t}}\n"
            "\tchain input {\n\t\ttype filter hook input priority -5; policy accept;\n"
            f"\t\tudp dport {int(port)} ip saddr != @members drop\n\t}}\n}}\n")


def sync_members(ns: Path | None, port: int, addresses: Iterable[str],
                 table: str = "pcompose_vxlan") -> None:
    """Replace the member filter in `ns` at once (no moment without it)."""
    text = render_members(port, addresses, table)
    nft.run(ns, text)
    log.info("overlay.members_synced", port=port, table=table)


def remove_members(ns: Path | None, table: str = "pcompose_vxlan") -> None:
    nft.run(ns, f"table ip {table} {{}}\ndelete table ip {table}\n")
