"""Event sources: they only say "look at this key again" (file changes, netlink link and
address changes, a short check, a resync tick)."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable, Hashable, Iterable
from pathlib import Path
from typing import TypeVar

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


K = TypeVar("K", bound=Hashable)


async def watch_socket(sock: socket.socket, names_of: Callable[[bytes], set[str]],
                       keys_for: Callable[[set[str] | None], Awaitable[Iterable[K]]],
                       add: Callable[[K], None], *,
                       debounce: float = 0.05) -> None:
    """Queue the keys `keys_for` derives from the names `names_of` reads in each datagram of
    `sock` (a netlink socket subscribed to link and address changes), a batch per
    `debounce` seconds: a deleted bridge and the veths it takes along are one look.
    `keys_for` (which may look at the machine first: not every change is drift) is given
    None when the socket lost events (a netlink overflow): every key may have changed."""
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    loop.add_reader(sock.fileno(), ready.set)
    try:
        while True:
            await ready.wait()
            await asyncio.sleep(debounce)
            ready.clear()
            names: set[str] | None = set()
            while True:
                try:
                    data = sock.recv(1 << 16)
                except BlockingIOError:
                    break
                except OSError as error:
                    if error.errno != errno.ENOBUFS:
                        raise
                    names = None  # some were lost: whatever they said, look at everything
                    continue
                if names is not None:
                    names |= names_of(data)
            if names is not None and not names:
                continue
            keys = list(await keys_for(names))
            log.debug("links.changed", links=sorted(names) if names is not None else "all",
                      keys=[str(k) for k in keys])
            for key in keys:
                add(key)
    finally:
        loop.remove_reader(sock.fileno())


async def check_every(interval: float, check: Callable[[], Awaitable[Iterable[K]]],
                      add: Callable[[K], None], *,
                      clock: clocks.Clock | None = None) -> None:
    """Run `check` every `interval` seconds and queue the keys it returns: for what no event
    announces (an nft table changed by hand), so that it is seen within `interval`."""
    clock = clock if clock is not None else clocks.MonotonicClock()
    while True:
        await clock.sleep(interval)
        for key in await check():
            add(key)
