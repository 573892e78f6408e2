"""The machine's state as a whole: what containers, images and volumes take on disk (docker's
`system df`) and the stopped containers that `system prune` removes."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Callable

import structlog

from controllers import context, image_use, services, volumes
from runtime import rootfs
from runtime.images import gc
from runtime.oci import observe

log = structlog.get_logger(__name__)

# A container stays `created` for the moment between runc create and start: one younger than this
# is being made (by the agent or a `run`) and is left to whoever makes it.
CREATED_GRACE = dt.timedelta(minutes=1)


@dataclasses.dataclass(frozen=True)
class ContainerUsage:
    view: services.ContainerView
    size: int  # its writable layer

    @property
    def active(self) -> bool:
        """docker's: running, paused or restarting."""
        return self.view.state in image_use.RUNNING


@dataclasses.dataclass(frozen=True)
class VolumeUsage:
    volume: volumes.volumes.Volume
    users: tuple[str, ...]
    size: int


@dataclasses.dataclass(frozen=True)
class DiskUsage:
    images: gc.Usage
    image_containers: dict[str, int]  # image id -> how many containers use it
    containers: tuple[ContainerUsage, ...]
    volumes: tuple[VolumeUsage, ...]


def writable_bytes(ctx: context.Context, cid: str) -> int:
    """What the container wrote over its image: its root's upper dir."""
    return gc.tree_bytes(rootfs.rootfs_dir(ctx.root, cid) / "upper")


async def disk_usage(ctx: context.Context) -> DiskUsage:
    images, counted = await image_use.usage(ctx)
    views = await services.list_containers(ctx)
    containers = tuple([ContainerUsage(v, await asyncio.to_thread(writable_bytes, ctx, v.id))
                        for v in views])
    used = await asyncio.to_thread(volumes.users, ctx)
    found = await asyncio.to_thread(volumes.volumes.list_all, ctx.root)
    vols = tuple([VolumeUsage(vol, used.get(vol.name, ()), await asyncio.to_thread(volumes.size, vol))
                  for vol in sorted(found, key=lambda v: v.name)])
    return DiskUsage(images, counted, containers, vols)


def _stopped(o: observe.Observed | None, now: dt.datetime) -> bool:
    if o is None:
        return False
    if o.status == "created":
        return o.created is not None and now - o.created > CREATED_GRACE
    return o.status == "exited"


async def prune_containers(ctx: context.Context,
                           keep: Callable[[services.ContainerView], bool] = lambda view: False,
                           removing: Callable[[services.ContainerView], None] = lambda view: None,
                           ) -> list[tuple[str, int]]:
    """`docker container prune`: every container that does not run (but those `keep` spares),
    as a user removes them: a stopped container of a project goes too, and comes back at its
    next `up`. Anonymous volumes stay for `volume prune`, as docker leaves them. `removing`
    is told of each just before it goes (the agent stops wanting it). Returns (container ID,
    bytes freed) of each."""
    gone = []
    for view in await services.list_containers(ctx):
        if view.state not in ("exited", "created") or keep(view):
            continue
        # Looked at again just before: a restart policy may have started it meanwhile.
        now = dt.datetime.now(dt.UTC)
        if not _stopped(await observe.get(ctx.layout, view.id), now):
            continue
        freed = await asyncio.to_thread(writable_bytes, ctx, view.id)
        removing(view)
        await services.remove_container(ctx, view.id)
        log.info("container.pruned", container=view.id, freed_bytes=freed)
        gone.append((view.id, freed))
    return gone
