"""Event sources: they only say "look at this key again" (file changes, a resync tick)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path

import structlog
import watchfiles

from reconciler.engine import clocks, workqueue

log = structlog.get_logger(__name__)

KeysForPaths = Callable[[set[Path]], Iterable[Hashable]]


async def watch_paths(paths: Iterable[Path], keys_for: KeysForPaths, queue: workqueue.WorkQueue,
                      *, stop: asyncio.Event | None = None, debounce_ms: int = 50) -> None:
    """Queue the keys `keys_for` derives from each batch of changed paths (conmon's exit
    dir, stack files, .env). Returns when `stop` is set."""
    watched = [str(p) for p in paths]
    async for changes in watchfiles.awatch(*watched, stop_event=stop, debounce=debounce_ms,
                                           step=debounce_ms, recursive=False,
                                           force_polling=False):
        changed = {Path(path) for _, path in changes}
        keys = list(keys_for(changed))
        log.debug("files.changed", paths=sorted(map(str, changed)), keys=[str(k) for k in keys])
        for key in keys:
            queue.add(key)


async def resync_every(interval: float, keys: Callable[[], Iterable[Hashable]],
                       queue: workqueue.WorkQueue, *, clock: clocks.Clock | None = None) -> None:
    """Queue every key now and then every `interval` seconds: the level-triggered safety net."""
    clock = clock if clock is not None else clocks.MonotonicClock()
    while True:
        for key in keys():
            queue.add(key)
        await clock.sleep(interval)
