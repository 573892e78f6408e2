"""Overlay networks on this host: a cluster network's VXLAN device and bridge, made an agent
network so containers join it as they join any other, its peers and member filter, and the
local endpoints the cluster announces. The cluster side hands in plain data: controllers never
read the cluster store."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import structlog

from controllers import context
from runtime.net import bridge, model, netns, records, vxlan

log = structlog.get_logger(__name__)

DRIVER = "overlay"
SCOPE = "swarm"  # docker's word for a network every node of the cluster sees
MEMBERS_TABLE = "pcompose_vxlan"


class OverlayControllerError(Exception):
    """An overlay network cannot be made on this host as asked."""


@dataclasses.dataclass(frozen=True)
class Local:
    """One overlay network as this host serves it: the network's id, name, VNI and whole CIDR,
    this host's subnet of it, and where its VXLAN traffic leaves (the underlay)."""

    id: str
    name: str
    vni: int
    cidr: str
    node: str
    subnet: str
    underlay_ip: str
    underlay_dev: str | None
    mtu: int
    attachable: bool = True
    port: int = vxlan.DEFAULT_PORT

    def spec(self) -> vxlan.OverlaySpec:
        return vxlan.OverlaySpec(network=self.name, vni=self.vni, node=self.node,
                                 subnet=self.subnet, cidr=self.cidr, underlay_ip=self.underlay_ip,
                                 underlay_dev=self.underlay_dev, port=self.port, mtu=self.mtu)


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A container of this host on an overlay network, as the cluster announces it."""

    network: str
    container: str
    ip: str
    service: str
    aliases: tuple[str, ...]
    hostname: str


@netns.on_worker
def _underlay(ns: Path | None, address: str) -> tuple[str, int] | None:
    ipr = netns.route(ns)
    for entry in ipr.get_addr(family=2):
        if entry.get_attr("IFA_ADDRESS") == address:
            link = ipr.get_links(entry["index"])[0]
            return link.get_attr("IFLA_IFNAME"), int(link.get_attr("IFLA_MTU"))
    return None


def underlay(ctx: context.Context, address: str) -> tuple[str, int]:
    """The link that holds this host's advertised address, and its MTU: VXLAN leaves by it."""
    found = _underlay(ctx.netns, address)
    if found is None:
        raise OverlayControllerError(f"no link of this host has the advertised address {address}")
    return found


def _meta_file(ctx: context.Context, name: str) -> Path:
    return ctx.root / "compose-networks" / f"{name}.json"


def ensure(ctx: context.Context, local: Local) -> model.Network:
    """The overlay on this host, then its bridge as an agent network named as the cluster's
    network (a stack joins it as `external: true`). Safe to repeat; touches no peer."""
    spec = local.spec()
    try:
        vxlan.ensure_overlay(ctx.netns, spec)
        with records.locked(ctx.root, "networks"):
            net = bridge.ensure_network(ctx.net_host, model.NetworkSpec(
                name=local.name, bridge=spec.bridge, subnet=local.subnet, gateway=spec.gateway,
                mtu=local.mtu, driver=DRIVER))
    except (vxlan.OverlayError, bridge.NetworkError) as error:
        raise OverlayControllerError(f"overlay network {local.name}: {error}") from None
    path = _meta_file(ctx, local.name)
    before = context.read_json(path)
    # What a stack that declared the network wrote beside (its project, key, labels) stays.
    wanted = {"labels": {}, "attachable": local.attachable, "options": {}, **before,
              "id": local.id, "created": before.get("created") or time.time_ns(),
              "scope": SCOPE, "cidr": local.cidr, "vni": local.vni}
    if before != wanted:
        path.parent.mkdir(parents=True, exist_ok=True)
        context.write_json(path, wanted)
    return net


def sync_peers(ctx: context.Context, local: Local, peers: list[vxlan.Peer]) -> list[str]:
    """The kernel's fdb, neighbours and routes towards the other hosts, diffed (never flushed)."""
    return vxlan.sync_peers(ctx.netns, local.spec(), peers)


def sync_members(ctx: context.Context, port: int, addresses: list[str]) -> None:
    vxlan.sync_members(ctx.netns, port, addresses, MEMBERS_TABLE)


def local_names(ctx: context.Context) -> set[str]:
    """The overlay networks this host serves now, by name."""
    return {name for name, net in records.networks(ctx.root).items() if net.driver == DRIVER}


def served(ctx: context.Context, node: str, underlay_ip: str) -> list[Local]:
    """The overlays this host serves, from its records and what `ensure` kept beside them: an
    agent finds those of networks the cluster removed while it was down."""
    out = []
    for name, net in sorted(records.networks(ctx.root).items()):
        meta = context.read_json(_meta_file(ctx, name))
        if net.driver != DRIVER or "vni" not in meta or "cidr" not in meta:
            continue
        out.append(Local(id=str(meta.get("id", "")), name=name, vni=int(meta["vni"]),
                         cidr=str(meta["cidr"]), node=node, subnet=net.subnet,
                         underlay_ip=underlay_ip, underlay_dev=None, mtu=net.mtu))
    return out


def remove(ctx: context.Context, local: Local) -> None:
    """The overlay off this host, when the cluster removed the network and no container uses
    it here."""
    with records.locked(ctx.root, "networks"):
        try:
            bridge.remove_network(ctx.net_host, local.name)
        except bridge.NetworkError as error:
            raise OverlayControllerError(str(error)) from None
    vxlan.remove_overlay(ctx.netns, local.spec())
    _meta_file(ctx, local.name).unlink(missing_ok=True)


def remove_members(ctx: context.Context) -> None:
    vxlan.remove_members(ctx.netns, MEMBERS_TABLE)


def endpoints(ctx: context.Context, networks: set[str]) -> list[Endpoint]:
    """This host's containers on the overlay networks `networks`, from the network records (a
    container has its endpoint from its start to its stop)."""
    out = []
    for att in records.attachments(ctx.root).values():
        c = att.container
        for ep in att.endpoints:
            if ep.network in networks and ep.ipv4:
                out.append(Endpoint(ep.network, c.container, ep.ipv4, c.service or "",
                                    tuple(ep.aliases), c.hostname or ""))
    return sorted(out, key=lambda e: (e.network, e.container))
