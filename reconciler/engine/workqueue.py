"""A queue of keys: duplicates collapse, one key in flight at a time, adds can be delayed."""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
from collections.abc import Hashable

from reconciler.engine import clocks


class ShutDown(Exception):
    """The queue was shut down: workers stop."""


class WorkQueue:
    """Keys wait in `ready` once; a key being processed that is added again runs once more
    after `done`, never twice at the same time."""

    def __init__(self, clock: clocks.Clock | None = None) -> None:
        self.clock = clock if clock is not None else clocks.MonotonicClock()
        self._ready: collections.deque[Hashable] = collections.deque()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._delayed: dict[Hashable, float] = {}
        self._timers: list[tuple[float, int, Hashable]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()
        self._shut_down = False

    def __len__(self) -> int:
        return len(self._ready)

    def add(self, key: Hashable) -> None:
        if self._shut_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._ready.append(key)
            self._changed.set()

    def add_after(self, key: Hashable, delay: float) -> None:
        """Add `key` in `delay` seconds; an earlier pending add of the same key wins."""
        if delay <= 0:
            self.add(key)
            return
        due = self.clock.now() + delay
        if self._delayed.get(key, float("inf")) <= due:
            return
        self._delayed[key] = due
        heapq.heappush(self._timers, (due, next(self._order), key))
        self._changed.set()

    def pending(self) -> set[Hashable]:
        """Keys ready, delayed or in flight."""
        return set(self._ready) | set(self._delayed) | self._processing

    async def get(self) -> Hashable:
        """The next key; the caller must call `done(key)` when finished with it."""
        while True:
            if self._shut_down:
                raise ShutDown()
            self._promote_due()
            if self._ready:
                key = self._ready.popleft()
                self._dirty.discard(key)
                self._processing.add(key)
                return key
            await self._wait()

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._ready.append(key)
            self._changed.set()

    def shut_down(self) -> None:
        self._shut_down = True
        self._changed.set()

    def _promote_due(self) -> None:
        now = self.clock.now()
        while self._timers and self._timers[0][0] <= now:
            due, _, key = heapq.heappop(self._timers)
            if self._delayed.get(key) == due:
                del self._delayed[key]
                self.add(key)

    async def _wait(self) -> None:
        self._changed.clear()
        waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self._changed.wait())]
        if self._timers:
            timeout = self._timers[0][0] - self.clock.now()
            waits.append(asyncio.ensure_future(self.clock.sleep(timeout)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
