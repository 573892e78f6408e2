"""Networks of projects: make, remove and read back the bridges a stack asks for.

The network runtime knows bridges by name only; which project and key a network belongs to,
and the hash of its definition, are kept beside it in `<root>/compose-networks/<name>.json`
(docker keeps the same as labels), so a restarted agent knows what it made.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from controllers import context
from reconciler.spec import model as spec_model
from runtime.net import bridge
from runtime.net import model as net_model

log = structlog.get_logger(__name__)

DEFAULT_MTU = 1500


class NetworkControllerError(Exception):
    """A network of the stack cannot be made as asked."""


def _labels_dir(ctx: context.Context) -> Path:
    return ctx.root / "compose-networks"


def spec_for(name: str, net: spec_model.Network) -> net_model.NetworkSpec:
    pool = net.ipam.config[0] if net.ipam and net.ipam.config else None
    mtu = net.driver_opts.get("com.docker.network.driver.mtu")
    return net_model.NetworkSpec(
        name=name, subnet=pool.subnet if pool else None, gateway=pool.gateway if pool else None,
        ip_range=pool.ip_range if pool else None,
        aux_addresses=tuple(pool.aux_addresses.values()) if pool else (),
        internal=bool(net.internal), external=bool(net.external),
        mtu=int(mtu) if mtu else DEFAULT_MTU)


async def ensure(ctx: context.Context, project: str, key: str, name: str,
                 net: spec_model.Network, config_hash: str) -> None:
    if net.driver not in (None, "bridge", "default"):
        raise NetworkControllerError(f"network {key}: driver {net.driver!r} is not supported "
                                     "on a single host (bridge only)")
    try:
        await asyncio.to_thread(bridge.ensure_network, ctx.net_host, spec_for(name, net))
    except bridge.NetworkError as err:
        raise NetworkControllerError(f"network {key}: {err}") from None
    _labels_dir(ctx).mkdir(parents=True, exist_ok=True)
    context.write_json(_labels_dir(ctx) / f"{name}.json",
                       {"project": project, "key": key, "config_hash": config_hash})


async def require(ctx: context.Context, name: str) -> None:
    """An external network must exist already; pcompose never makes or removes it."""
    found = await asyncio.to_thread(bridge.observe, ctx.net_host)
    if name not in found.networks:
        raise NetworkControllerError(f"network {name} declared as external, but could not be found")


async def remove(ctx: context.Context, name: str) -> None:
    await asyncio.to_thread(bridge.remove_network, ctx.net_host, name)
    (_labels_dir(ctx) / f"{name}.json").unlink(missing_ok=True)
    log.info("network.removed_for_project", network=name)


def observe(ctx: context.Context, project: str) -> list[tuple[str, str, str]]:
    """(name, key, config_hash) of the networks this agent made for `project`."""
    out = []
    base = _labels_dir(ctx)
    if not base.is_dir():
        return out
    for path in sorted(base.glob("*.json")):
        data = context.read_json(path)
        if data.get("project") == project:
            out.append((path.stem, data.get("key", ""), data.get("config_hash", "")))
    return out
