"""Named volumes of projects: make, remove and read them back by their labels, as docker labels them."""

from __future__ import annotations

import asyncio

from controllers import context
from reconciler.spec import model as spec_model
from runtime import volumes

PROJECT = "com.docker.compose.project"
KEY = "com.docker.compose.volume"
HASH = "io.pcompose.config-hash"
ANONYMOUS = "io.pcompose.anonymous"


async def ensure(ctx: context.Context, project: str, key: str, name: str,
                 vol: spec_model.Volume, config_hash: str) -> None:
    labels = {**{k: str(v) for k, v in vol.labels.items()},
              PROJECT: project, KEY: key, HASH: config_hash}
    spec = volumes.VolumeSpec(
        name=name, driver=vol.driver or "local",
        driver_opts=tuple(sorted((k, str(v)) for k, v in vol.driver_opts.items())),
        labels=tuple(sorted(labels.items())))
    await asyncio.to_thread(volumes.ensure, ctx.root, spec)


async def require(ctx: context.Context, name: str) -> None:
    if volumes.get(ctx.root, name) is None:
        raise volumes.VolumeError(f"external volume {name!r} not found")


async def remove(ctx: context.Context, name: str) -> None:
    await asyncio.to_thread(volumes.remove, ctx.root, name)


def observe(ctx: context.Context, project: str) -> list[tuple[str, str, str]]:
    """(name, key, config_hash) of the named volumes this agent made for `project`;
    anonymous volumes belong to their containers and are not listed."""
    return [(v.name, v.label(KEY) or "", v.label(HASH) or "")
            for v in volumes.list_all(ctx.root)
            if v.label(PROJECT) == project and not v.label(ANONYMOUS)]


def anonymous_of(ctx: context.Context, project: str) -> list[str]:
    return [v.name for v in volumes.list_all(ctx.root)
            if v.label(PROJECT) == project and v.label(ANONYMOUS)]
