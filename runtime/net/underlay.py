"""Underlay endpoints (macvlan, ipvlan): a child of a host link, made straight inside the
container's namespace with its own address on the hosts' network: no bridge, no NAT, no
encapsulation. The kernel keeps a host from reaching its own macvlan children."""

from __future__ import annotations

import dataclasses
import errno
from pathlib import Path

import structlog
from pyroute2 import NetlinkError

from runtime.net import netns

log = structlog.get_logger(__name__)

MACVLAN_MODES = ("bridge", "private", "vepa", "passthru")
IPVLAN_MODES = ("l2", "l3")
MODES = {"macvlan": MACVLAN_MODES, "ipvlan": IPVLAN_MODES}
DRIVERS = tuple(MODES)
DEFAULT_MODE = {"macvlan": "bridge", "ipvlan": "l2"}
IPVLAN_MODE_NUMBER = {"l2": 0, "l3": 1}  # <linux/if_link.h> IPVLAN_MODE_*


class UnderlayError(ValueError):
    """An endpoint that cannot be made as asked: a bad driver or mode, a missing parent link, or a
    kernel without the driver."""


@dataclasses.dataclass(frozen=True)
class Underlay:
    """How a network reaches the hosts' own network: its driver, parent link and mode."""

    driver: str
    parent: str
    mode: str = ""

    @property
    def effective_mode(self) -> str:
        return self.mode or DEFAULT_MODE[self.driver]


def check(u: Underlay, where: str = "network") -> None:
    if u.driver not in MODES:
        raise UnderlayError(f"{where}: driver {u.driver!r} is not one of {', '.join(DRIVERS)}")
    if not u.parent:
        raise UnderlayError(f"{where}: driver {u.driver} needs driver_opts.parent (a host link)")
    if u.effective_mode not in MODES[u.driver]:
        raise UnderlayError(f"{where}: {u.driver}_mode {u.mode!r} is not one of "
                            f"{', '.join(MODES[u.driver])}")


def link_request(u: Underlay, parent_index: int, ifname: str, netns_fd: int | str,
                 mac: str | None, mtu: int) -> dict:
    """The `link add` request (pyroute2 keywords) for the child: made in the container's
    namespace (`netns_fd`) at once, so it never shows in the host's. An ipvlan child shares its
    parent's MAC: it takes none of its own."""
    check(u)
    request: dict = {"ifname": ifname, "kind": u.driver, "link": parent_index,
                     "net_ns_fd": netns_fd, "mtu": mtu}
    if u.driver == "macvlan":
        request["macvlan_mode"] = u.effective_mode
        if mac:
            request["address"] = mac
    else:
        request["ipvlan_mode"] = IPVLAN_MODE_NUMBER[u.effective_mode]
    return request


def _index(ipr, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def _kind(ipr, index: int) -> str:
    info = ipr.get_links(index)[0].get_attr("IFLA_LINKINFO")
    return (info.get_attr("IFLA_INFO_KIND") if info else "") or ""


@netns.on_worker
def parent_mtu(host_ns: Path | None, parent: str) -> int:
    ipr = netns.route(host_ns)
    index = _index(ipr, parent)
    if index is None:
        raise UnderlayError(f"parent link {parent} does not exist")
    return ipr.get_links(index)[0].get_attr("IFLA_MTU")


@netns.on_worker
def ensure_endpoint(host_ns: Path | None, u: Underlay, container_ns: Path, ifname: str,
                    address: str, prefixlen: int, mac: str | None, mtu: int,
                    gateway: str | None = None) -> None:
    """`ifname` in `container_ns`: a child of `u.parent` with one address, up; its MTU is `mtu`
    or the parent's when that is smaller (a child cannot exceed its parent). With `gateway`, the
    namespace's default route goes through it (ipvlan l3: out of the child, as docker does: the
    parent's namespace routes, nothing answers ARP). Safe to repeat: a child of the right kind
    stays, anything else of that name is made again."""
    check(u, f"{u.driver} endpoint {ifname}")
    ipr = netns.route(host_ns)
    inner = netns.route(container_ns)
    parent = _index(ipr, u.parent)
    if parent is None:
        raise UnderlayError(f"{u.driver}: parent link {u.parent} does not exist")
    mtu = min(mtu, ipr.get_links(parent)[0].get_attr("IFLA_MTU"))
    index = _index(inner, ifname)
    if index is not None and _kind(inner, index) != u.driver:
        inner.link("del", index=index)
        index = None
    if index is None:
        try:
            ipr.link("add", **link_request(u, parent, ifname, str(container_ns), mac, mtu))
        except NetlinkError as exc:
            if exc.code == errno.EOPNOTSUPP:
                raise UnderlayError(f"{u.driver}: this kernel has no {u.driver} driver "
                                    f"(CONFIG_{u.driver.upper()} is not set)") from None
            if exc.code == errno.EBUSY and u.effective_mode == "passthru":
                raise UnderlayError(f"macvlan passthru: {u.parent} already has its one "
                                    "passthru child") from None
            raise
        index = _index(inner, ifname)
        log.info("underlay.created", driver=u.driver, parent=u.parent, link=ifname,
                 netns=str(container_ns))
    settings: dict = {"mtu": mtu, "state": "up"}
    if mac and u.driver == "macvlan" and inner.get_links(index)[0].get_attr("IFLA_ADDRESS") != mac:
        settings["address"] = mac  # only when it differs: a new MAC flushes the neighbours
    inner.link("set", index=index, **settings)
    have = {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in inner.get_addr(index=index, family=2)}
    for cidr in have - {f"{address}/{prefixlen}"}:
        ip, plen = cidr.split("/")
        inner.addr("del", index=index, address=ip, prefixlen=int(plen))
    if f"{address}/{prefixlen}" not in have:
        inner.addr("add", index=index, address=address, prefixlen=prefixlen)
    if gateway and u.driver == "ipvlan" and u.effective_mode == "l3":
        inner.route("replace", dst="0.0.0.0/0", oif=index)
    elif gateway:
        inner.route("replace", dst="0.0.0.0/0", gateway=gateway)
