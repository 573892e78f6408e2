"""What a restarted agent finds half done, and the monitors of the containers it keeps.

An agent killed while it made a container leaves what it made so far: a mounted root, a network
namespace with an address lease, a bundle that runc never created. runc does not know such a
container, so no plan sees it: `remove_half_made` takes it away once, before the new agent acts,
and the plan makes it again if it is still wanted.

A container whose conmon died (killed, or with the agent before the agent read its answer) is
seen by the observation (`monitored`); `MonitorWatch` notices the death itself at once, so the
project is looked at again without waiting for the resync.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import structlog

from controllers import context, services
from runtime.net import bridge, records
from runtime.oci import lifecycle

log = structlog.get_logger(__name__)


def _half_made(ctx: context.Context, before: float) -> tuple[list[str], list[str]]:
    """What is on the machine of containers runc does not know, all of it made before
    `before` (later: a container this agent is making now): the ids of their state (bundle,
    root, files), and the names whose network (namespace, addresses) no container holds.

    State is keyed by a container's id, the network by its name; a container made before
    ids were given has its name as its id, and is known as such."""
    times: dict[str, float] = {}

    def seen(cid: str, path: Path) -> None:
        try:
            made = path.stat().st_mtime
        except OSError:
            made = 0.0
        times[cid] = max(times.get(cid, 0.0), made)

    for folder in (ctx.root / "containers", ctx.root / "rootfs", ctx.run_dir / "files"):
        if folder.is_dir():
            for entry in folder.iterdir():
                seen(entry.name, entry)
    ids = sorted(cid for cid, made in times.items()
                 if made < before and not lifecycle.known(ctx.layout, cid))
    # Timeless: a namespace (an nsfs mount's times are not its making) and an address
    # record come after the root, whose dir times the making.
    held = {lifecycle.name_of(ctx.layout, cid) for cid in lifecycle.known_ids(ctx.layout)}
    netns_dir = ctx.run_dir / "netns"
    names = {e.name for e in netns_dir.iterdir()} if netns_dir.is_dir() else set()
    names |= set(records.attachments(ctx.root))
    return ids, sorted(names - held)


async def remove_half_made(ctx: context.Context, before: float) -> list[str]:
    """Remove every half-made container (root, namespace, lease, files) and the links and
    leases no record accounts for; returns the containers removed (ids, and names of
    networks held by no container)."""
    ids, names = await asyncio.to_thread(_half_made, ctx, before)
    removed = []
    for cid in ids:
        try:
            # The network goes by name below, and only when no live container has that name.
            await services.remove_container(ctx, cid, name="")
        except Exception as error:
            log.error("container.half_made_kept", container=cid,
                      error=f"{type(error).__name__}: {error}")
        else:
            removed.append(cid)
    for name in names:
        try:
            await asyncio.to_thread(services.release_network, ctx, name)
        except Exception as error:  # as above
            log.error("container.half_made_kept", container=name,
                      error=f"{type(error).__name__}: {error}")
        else:
            removed.append(name)
    await asyncio.to_thread(bridge.sweep, ctx.net_host)
    if removed:
        log.info("containers.half_made_removed", containers=removed)
    return removed


class MonitorWatch:
    """A pidfd per conmon the agent saw: its end wakes the container's project."""

    def __init__(self) -> None:
        self._enqueue: Callable[[str], None] | None = None
        self._fds: dict[int, int] = {}  # conmon PID -> pidfd

    def start(self, enqueue: Callable[[str], None]) -> None:
        self._enqueue = enqueue

    def watch(self, project: str, pid: int) -> None:
        """Wake `project` when conmon `pid` ends; once per PID, from the event loop."""
        if self._enqueue is None or pid <= 0 or pid in self._fds:
            return
        try:
            fd = os.pidfd_open(pid)
        except OSError:  # gone already (the observation saw it go), or out of descriptors
            return
        self._fds[pid] = fd
        asyncio.get_running_loop().add_reader(fd, self._ended, project, pid)

    def _ended(self, project: str, pid: int) -> None:
        self._forget(pid)
        if self._enqueue is not None:
            self._enqueue(project)

    def _forget(self, pid: int) -> None:
        fd = self._fds.pop(pid, None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)

    def stop(self) -> None:
        for pid in list(self._fds):
            self._forget(pid)
        self._enqueue = None
