"""Images against the containers that use them: docker's removal conflicts, image prune, and the
images' part of disk usage, with the users runc knows of."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from controllers import context
from runtime.images import gc, store as image_store
from runtime.oci import observe

# docker's IsRunning: a paused container still runs (its image cannot be deleted under it).
RUNNING = ("running", "paused")


async def users(ctx: context.Context) -> dict[str, tuple[gc.Use, ...]]:
    """Image id -> the containers made from it, in any state, as docker counts them."""
    found: dict[str, list[gc.Use]] = {}
    for o in await observe.list_containers(ctx.layout):
        if o.image:
            found.setdefault(o.image, []).append(gc.Use(o.id, o.status in RUNNING))
    return {image_id: tuple(sorted(uses, key=lambda u: u.container))
            for image_id, uses in found.items()}


async def remove(ctx: context.Context, text: str, *, force: bool = False,
                 known_users: gc.Users | None = None) -> tuple[gc.Removal, gc.GcReport]:
    """`docker rmi TEXT`: untag or delete, then free what nothing uses any more."""
    found = await users(ctx) if known_users is None else known_users
    removal = await asyncio.to_thread(gc.remove_image, ctx.images, text, force, found)
    return removal, await asyncio.to_thread(gc.collect, ctx.images)


async def prune(ctx: context.Context, *, all_images: bool = False,
                keep: Callable[[image_store.ImageRecord], bool] = lambda record: False,
                ) -> tuple[list[gc.Removal], gc.GcReport]:
    """`docker image prune [-a]`: images without a name (-a: every image) no container uses, then
    every blob and layer nothing reaches, such as those of a load that was refused halfway."""
    found = await users(ctx)
    removals = await asyncio.to_thread(gc.prune, ctx.images, all_images, found, keep)
    return removals, await asyncio.to_thread(gc.collect, ctx.images)


async def usage(ctx: context.Context) -> tuple[gc.Usage, dict[str, int]]:
    """What the images take on disk, and how many containers use each image (by id)."""
    found = await users(ctx)
    counted = {image_id: len(uses) for image_id, uses in found.items()}
    return await asyncio.to_thread(gc.usage, ctx.images, set(counted)), counted
