"""Event sources: real file changes (watchfiles) and a resync tick on fake time become keys."""

from __future__ import annotations

import asyncio
from pathlib import Path

from reconciler.engine import clocks, sources, workqueue
from tests.support import waiting


async def test_a_file_appearing_in_a_watched_dir_queues_its_key(tmp_path: Path):
    exits = tmp_path / "exits"
    exits.mkdir()
    queue = workqueue.WorkQueue()
    stop = asyncio.Event()
    watcher = asyncio.ensure_future(sources.watch_paths(
        [exits], lambda paths: {p.name.split("-")[0] for p in paths}, queue, stop=stop))
    try:
        # A probe file, written until its key comes: then inotify is armed.
        async def armed() -> bool:
            (exits / "probe-1").write_text("0")
            try:
                key = await asyncio.wait_for(queue.get(), 0.1)
            except TimeoutError:
                return False
            queue.done(key)
            return key == "probe"

        await waiting.until(armed, timeout=10, what="the watch armed")
        (exits / "shop-web-1").write_text("137")
        key = "probe"
        while key == "probe":  # late events of the probe, collapsed into one key
            key = await asyncio.wait_for(queue.get(), 5)
            queue.done(key)
        assert key == "shop"
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 5)


async def test_resync_queues_every_key_each_interval():
    clock = clocks.FakeClock()
    queue = workqueue.WorkQueue(clock)
    projects = ["a", "b"]
    ticker = asyncio.ensure_future(sources.resync_every(30, lambda: projects, queue, clock=clock))
    try:
        await clocks.settle()
        assert [await queue.get() for _ in range(2)] == ["a", "b"]
        queue.done("a"), queue.done("b")
        projects.append("c")
        await clock.advance(29)
        assert len(queue) == 0
        await clock.advance(1)
        assert len(queue) == 3
    finally:
        ticker.cancel()
