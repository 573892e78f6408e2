"""Frozen dataclasses that describe single-host networks: what is wanted and what was made."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Host:
    """Where one agent keeps its bridges, rules, DNS listeners and records.

    `netns` is the host namespace the agent was given (None: the real host), so several agents
    (or simulated hosts in tests) can share one machine without seeing each other.
    """

    agent: str
    state_root: Path
    run_dir: Path
    netns: Path | None = None
    # Default pools to carve networks from, in order; subnets overlapping a host route are skipped.
    pools: tuple[tuple[str, int], ...] = (("172.16.0.0/12", 16), ("192.168.0.0/16", 20))
    upstreams: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """A compose network as the runtime needs it (`name` is the full `<project>_<key>`)."""

    name: str
    subnet: str | None = None
    gateway: str | None = None
    ip_range: str | None = None
    aux_addresses: tuple[str, ...] = ()
    internal: bool = False
    external: bool = False
    mtu: int = 1500
    bridge: str | None = None
    # "bridge", or an underlay driver (macvlan, ipvlan) with the host link its containers'
    # interfaces hang off and the driver's mode ("" for its default)
    driver: str = "bridge"
    parent: str = ""
    mode: str = ""


@dataclasses.dataclass(frozen=True)
class Network:
    """A network that exists: its bridge, subnet and gateway are settled. An underlay network
    (`driver` macvlan or ipvlan) has no bridge (""): its gateway is the hosts' router."""

    name: str
    bridge: str
    subnet: str
    gateway: str
    internal: bool = False
    external: bool = False
    mtu: int = 1500
    driver: str = "bridge"
    parent: str = ""
    mode: str = ""
    # the bridge's fixed MAC, so that one made again keeps the gateway's MAC in containers'
    # ARP caches ("": none recorded yet, or no bridge)
    mac: str = ""

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen


@dataclasses.dataclass(frozen=True)
class PortMapping:
    """One published port: host `published` (on `host_ip`, '' = any) to container `target`."""

    target: int
    published: int
    protocol: str = "tcp"
    host_ip: str = ""


@dataclasses.dataclass(frozen=True)
class EndpointSpec:
    """A container's wish to join one network."""

    network: str
    ipv4: str | None = None
    mac: str | None = None
    aliases: tuple[str, ...] = ()
    priority: int = 0


@dataclasses.dataclass(frozen=True)
class ContainerNet:
    """Everything about one container that networking needs.

    `mode` is `bridge` (join `endpoints`), `none` (loopback only), `host` (the agent's host
    namespace), `service:x` / `container:x` (share x's namespace; `netns` None looks x up in the
    records), or `netns` (share the namespace at `netns`, made by someone else).
    """

    container: str
    netns: Path | None
    service: str | None = None
    hostname: str | None = None
    mode: str = "bridge"
    endpoints: tuple[EndpointSpec, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_opt: tuple[str, ...] = ()
    extra_hosts: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A container's interface in one network, as made."""

    container: str
    network: str
    ifname: str
    host_ifname: str
    ipv4: str
    mac: str
    aliases: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Attachment:
    """What was made for one container: kept on disk so a restarted agent finds it."""

    container: ContainerNet
    endpoints: tuple[Endpoint, ...]


def to_json(obj) -> dict:
    """A frozen dataclass as plain JSON data (paths as strings)."""
    return json_safe(dataclasses.asdict(obj))


def json_safe(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def attachment_from_json(data: dict) -> Attachment:
    c = data["container"]
    container = ContainerNet(
        container=c["container"],
        netns=Path(c["netns"]) if c["netns"] else None,
        service=c["service"],
        hostname=c["hostname"],
        mode=c["mode"],
        endpoints=tuple(
            EndpointSpec(e["network"], e["ipv4"], e["mac"], tuple(e["aliases"]), e["priority"])
            for e in c["endpoints"]
        ),
        ports=tuple(PortMapping(**p) for p in c["ports"]),
        links=tuple(tuple(x) for x in c["links"]),
        dns=tuple(c["dns"]),
        dns_search=tuple(c["dns_search"]),
        dns_opt=tuple(c["dns_opt"]),
        extra_hosts=tuple(tuple(x) for x in c["extra_hosts"]),
    )
    endpoints = tuple(
        Endpoint(**{**e, "aliases": tuple(e["aliases"])}) for e in data["endpoints"]
    )
    return Attachment(container, endpoints)
