"""Networks of projects and of `pcompose network`: make, remove, list and read back bridges.

The network runtime knows bridges by name only; which project and key a network belongs to,
the hash of its definition, and what docker shows of a network (its id, creation time, labels,
attachable) are kept beside it in `<root>/compose-networks/<name>.json`, so a restarted agent
knows what it made and `network ls --filter label=com.docker.compose.project=x` works as with
docker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import secrets
import time
import typing
from pathlib import Path

import structlog

from controllers import context
from runtime import labels
from runtime.net import bridge, ipam, model as net_model, names, records

if typing.TYPE_CHECKING:  # the verbs that only list need not import the stack loader
    from reconciler.spec import model as spec_model

log = structlog.get_logger(__name__)

DEFAULT_MTU = 1500
PROJECT = labels.PROJECT
NETWORK = labels.NETWORK
MTU_OPTION = "com.docker.network.driver.mtu"
UNDERLAY_DRIVERS = ("macvlan", "ipvlan")


class NetworkControllerError(Exception):
    """A network of the stack cannot be made as asked."""


class NetworkInUse(NetworkControllerError):
    """Containers are still attached to the network: it stays."""


class NetworkNotFound(NetworkControllerError):
    """No network has that name, id or id prefix."""


def _labels_dir(ctx: context.Context) -> Path:
    return ctx.root / "compose-networks"


def spec_for(name: str, net: spec_model.Network) -> net_model.NetworkSpec:
    pool = net.ipam.config[0] if net.ipam and net.ipam.config else None
    mtu = net.driver_opts.get("com.docker.network.driver.mtu")
    driver, parent, mode = _underlay(net)
    return net_model.NetworkSpec(
        name=name, subnet=pool.subnet if pool else None, gateway=pool.gateway if pool else None,
        ip_range=pool.ip_range if pool else None,
        aux_addresses=tuple(pool.aux_addresses.values()) if pool else (),
        internal=bool(net.internal), external=bool(net.external),
        mtu=int(mtu) if mtu else DEFAULT_MTU, driver=driver, parent=parent, mode=mode)


def _underlay(net: spec_model.Network) -> tuple[str, str, str]:
    """The network's driver, and an underlay's parent link and mode from docker's driver_opts."""
    if net.driver not in UNDERLAY_DRIVERS:
        return "bridge", "", ""
    return (net.driver, str(net.driver_opts.get("parent", "")),
            str(net.driver_opts.get(f"{net.driver}_mode", "")))


# Set by an agent in a cluster (reconciler.cluster.overlay): `await OVERLAY.declare(name,
# subnet, attachable)` makes a stack's `driver: overlay` network in the cluster and returns once
# this host serves it; `await OVERLAY.withdraw(name)` removes it from the cluster unless
# containers of any host use it. None on a single host.
OVERLAY: typing.Any = None


async def ensure(ctx: context.Context, project: str, key: str, name: str,
                 net: spec_model.Network, config_hash: str) -> None:
    if net.driver == "overlay":
        await _ensure_overlay(ctx, project, key, name, net, config_hash)
        return
    if net.driver not in (None, "bridge", "default", *UNDERLAY_DRIVERS):
        raise NetworkControllerError(f"network {key}: driver {net.driver!r} is not supported "
                                     "(bridge, macvlan, ipvlan)")
    try:
        await asyncio.to_thread(bridge.ensure_network, ctx.net_host, spec_for(name, net))
    except bridge.NetworkError as err:
        raise NetworkControllerError(f"network {key}: {err}") from None
    labels = {**{k: str(v) for k, v in net.labels.items()}, PROJECT: project, NETWORK: key}
    _write_meta(ctx, name, {"project": project, "key": key, "config_hash": config_hash,
                            "labels": labels, "attachable": bool(net.attachable),
                            "options": {k: str(v) for k, v in net.driver_opts.items()}})


async def _ensure_overlay(ctx: context.Context, project: str, key: str, name: str,
                          net: spec_model.Network, config_hash: str) -> None:
    if OVERLAY is None:
        raise NetworkControllerError(f"network {key}: driver overlay needs pcompose agent "
                                     "--cluster (this agent runs one host)")
    pool = net.ipam.config[0] if net.ipam and net.ipam.config else None
    await OVERLAY.declare(name, pool.subnet if pool else None, bool(net.attachable))
    labels = {**{k: str(v) for k, v in net.labels.items()}, PROJECT: project, NETWORK: key}
    _write_meta(ctx, name, {**context.read_json(_labels_dir(ctx) / f"{name}.json"),
                            "project": project, "key": key, "config_hash": config_hash,
                            "labels": labels, "attachable": bool(net.attachable)})


async def require(ctx: context.Context, name: str) -> None:
    """An external network must exist already; pcompose never makes or removes it."""
    found = await asyncio.to_thread(bridge.observe, ctx.net_host)
    if name not in found.networks:
        raise NetworkControllerError(f"network {name} declared as external, but could not be found")


async def remove(ctx: context.Context, name: str) -> None:
    meta = context.read_json(_labels_dir(ctx) / f"{name}.json")
    if meta.get("scope") == "swarm" and OVERLAY is not None:
        # The cluster's network: each host takes its part away once the cluster forgets it.
        await OVERLAY.withdraw(name)
        # No longer the project's; what the overlay keeps beside it stays until the cluster's
        # watcher takes the network off this host.
        context.write_json(_labels_dir(ctx) / f"{name}.json", {
            k: v for k, v in meta.items() if k not in ("project", "key", "config_hash")})
        return
    await asyncio.to_thread(bridge.remove_network, ctx.net_host, name)
    (_labels_dir(ctx) / f"{name}.json").unlink(missing_ok=True)
    log.info("network.removed_for_project", network=name)


def observe(ctx: context.Context, project: str) -> list[tuple[str, str, str]]:
    """(name, key, config_hash) of the networks this agent made for `project`."""
    out: list[tuple[str, str, str]] = []
    base = _labels_dir(ctx)
    if not base.is_dir():
        return out
    for path in sorted(base.glob("*.json")):
        data = context.read_json(path)
        if data.get("project") == project:
            out.append((path.stem, data.get("key", ""), data.get("config_hash", "")))
    return out


def projects(ctx: context.Context) -> dict[str, str]:
    """network name -> project, for every network this agent made for a project."""
    base = _labels_dir(ctx)
    if not base.is_dir():
        return {}
    out: dict[str, str] = {}
    for path in base.glob("*.json"):
        project = context.read_json(path).get("project")
        if project:
            out[path.stem] = project
    return out


# -- what `pcompose network` shows and does: docker's view of every network of this agent


@dataclasses.dataclass(frozen=True)
class Member:
    """A container's endpoint in a network, as `network inspect` lists it."""

    container: str
    ipv4: str
    prefixlen: int
    mac: str


@dataclasses.dataclass(frozen=True)
class NetworkView:
    """One network as docker describes it (driver bridge, scope local: the only ones here)."""

    name: str
    id: str
    created_ns: int
    subnet: str
    gateway: str
    ip_range: str | None
    internal: bool
    attachable: bool
    labels: tuple[tuple[str, str], ...]
    options: tuple[tuple[str, str], ...]
    members: tuple[Member, ...]
    driver: str = "bridge"
    scope: str = "local"

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


def _new_id() -> str:
    return secrets.token_hex(32)  # docker's: 64 hex digits, random


def _write_meta(ctx: context.Context, name: str, data: dict) -> None:
    """Keep the id and creation time a network already has: a repeated ensure is the same network."""
    path = _labels_dir(ctx) / f"{name}.json"
    before = context.read_json(path)
    data = {**data, "id": before.get("id") or _new_id(),
            "created": before.get("created") or time.time_ns()}
    path.parent.mkdir(parents=True, exist_ok=True)
    context.write_json(path, data)


def _view(ctx: context.Context, net: net_model.Network, members: list[Member],
          pool: ipam.Pool | None) -> NetworkView:
    meta = context.read_json(_labels_dir(ctx) / f"{net.name}.json")
    labels = dict(meta.get("labels") or {})
    if "labels" not in meta and meta.get("project"):  # made before networks carried labels
        labels = {PROJECT: meta["project"], NETWORK: meta.get("key", "")}
    record = records.network_file(ctx.root, net.name)
    created = meta.get("created") or (record.stat().st_mtime_ns if record.exists() else 0)
    options = dict(meta.get("options") or {})
    if net.mtu != DEFAULT_MTU:
        options.setdefault(MTU_OPTION, str(net.mtu))
    return NetworkView(
        name=net.name,
        # Without a record of its own id (made before ids were kept) a network gets a stable one.
        id=meta.get("id") or names.digest(ctx.agent, "network", net.name, length=64),
        created_ns=int(created), subnet=net.subnet, gateway=net.gateway,
        ip_range=pool.ip_range if pool else None, internal=net.internal,
        attachable=bool(meta.get("attachable")), labels=tuple(sorted(labels.items())),
        options=tuple(sorted(options.items())),
        members=tuple(sorted(members, key=lambda m: m.container)), driver=net.driver,
        scope=str(meta.get("scope") or "local"))  # an overlay's is the cluster's: "swarm"


def list_all(ctx: context.Context) -> list[NetworkView]:
    """Every network of this agent, made for a stack or by `network create`."""
    nets = records.networks(ctx.root)
    members: dict[str, list[Member]] = {name: [] for name in nets}
    for att in records.attachments(ctx.root).values():
        for ep in att.endpoints:
            if ep.network in nets:
                members[ep.network].append(
                    Member(ep.container, ep.ipv4, nets[ep.network].prefixlen, ep.mac))
    pools = ipam.observe(ctx.root)
    return [_view(ctx, net, members[name], pools.get(name)) for name, net in sorted(nets.items())]


def find(views: list[NetworkView], ref: str) -> NetworkView:
    """docker's lookup: a name, else a whole id, else the one id that starts with `ref`."""
    for match in ([v for v in views if v.name == ref], [v for v in views if v.id == ref],
                  [v for v in views if ref and v.id.startswith(ref)]):
        if len(match) == 1:
            return match[0]
        if len(match) > 1:
            raise NetworkNotFound(f"network {ref} is ambiguous ({len(match)} matches found "
                                  "based on ID prefix)")
    raise NetworkNotFound(f"network {ref} not found")


def create(ctx: context.Context, name: str, *, subnet: str | None = None,
           gateway: str | None = None, ip_range: str | None = None, internal: bool = False,
           attachable: bool = False, labels: dict[str, str] | None = None,
           options: dict[str, str] | None = None) -> NetworkView:
    """A user's network (`docker network create`): a bridge a stack can join as external.
    Runs beside the agent: the records, the address pools and the nft table are files and a
    table rebuilt whole from them under locks, so neither side undoes the other."""
    if not bridge.NAME.match(name):
        raise NetworkControllerError(f"invalid network name {name!r}: use letters, digits, "
                                     "'_', '.', '-', starting with a letter or digit")
    options = dict(options or {})
    unknown = sorted(set(options) - {MTU_OPTION})
    if unknown:
        raise NetworkControllerError(f"network option {unknown[0]} is not supported "
                                     f"(only {MTU_OPTION})")
    try:
        mtu = int(options.get(MTU_OPTION, DEFAULT_MTU))
    except ValueError:
        raise NetworkControllerError(f"{MTU_OPTION}: {options[MTU_OPTION]!r} is not a number") from None
    for what, value in (("subnet", subnet), ("ip-range", ip_range)):
        if value:
            try:
                ipaddress.ip_network(value, strict=True)
            except ValueError as err:
                raise NetworkControllerError(f"invalid {what} {value}: {err}") from None
    spec = net_model.NetworkSpec(name=name, subnet=subnet, gateway=gateway, ip_range=ip_range,
                                 internal=internal, mtu=mtu)
    with records.locked(ctx.root, "networks"):
        if name in records.networks(ctx.root):
            raise NetworkControllerError(f"network with name {name} already exists")
        try:
            bridge.ensure_network(ctx.net_host, spec)
        except bridge.NetworkError as err:
            _undo_create(ctx, name)
            raise NetworkControllerError(str(err)) from None
        except BaseException:
            _undo_create(ctx, name)
            raise
        _write_meta(ctx, name, {"labels": dict(labels or {}), "attachable": attachable,
                                "options": options})
    return find(list_all(ctx), name)


def _undo_create(ctx: context.Context, name: str) -> None:
    """What a failed create reserved (its subnet, maybe a bridge) goes again."""
    bridge.remove_network(ctx.net_host, name)
    (_labels_dir(ctx) / f"{name}.json").unlink(missing_ok=True)


def active_endpoints_error(view: NetworkView) -> str:
    """docker's words for a network that still has containers."""
    names = [m.container for m in view.members]
    count = f"{len(names)} active endpoint" + ("s" if len(names) != 1 else "")
    return (f"error while removing network: network {view.name} has {count} "
            f"({', '.join(names)})")


def remove_unused(ctx: context.Context, ref: str) -> str:
    """Remove the network `ref` (name, id or id prefix) unless containers use it; its name."""
    with records.locked(ctx.root, "networks"):
        view = find(list_all(ctx), ref)
        if view.members:
            raise NetworkInUse(active_endpoints_error(view))
        try:
            bridge.remove_network(ctx.net_host, view.name)
        except bridge.NetworkError as err:  # a container joined it since we looked
            raise NetworkInUse(str(err)) from None
        (_labels_dir(ctx) / f"{view.name}.json").unlink(missing_ok=True)
    log.info("network.removed_by_user", network=view.name)
    return view.name


def prune(ctx: context.Context, keep=lambda view: False) -> list[str]:
    """Remove every network no container uses (but those `keep` spares); their names."""
    gone = []
    for view in list_all(ctx):
        if view.members or keep(view):
            continue
        try:
            gone.append(remove_unused(ctx, view.name))
        except (NetworkInUse, NetworkNotFound):
            continue  # joined or removed beside us: not ours to remove now
    return gone
