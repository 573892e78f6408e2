"""Coalesced refreshes: many steps that each ask to rebuild the same thing share the rebuilds.

A step asks after it changed what the refresh reads and returns once a refresh that began after
its request has finished. While one refresh runs, later requests wait and one follow-up covers
all of them, so the 50 creates of a stack cost a few refreshes, not 50.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Coalesced:
    """`await refresh()` runs `work` for this request, or waits for a run that covers it."""

    def __init__(self, work: Callable[[], Awaitable[None]]) -> None:
        self._work = work
        self._running = asyncio.Lock()  # FIFO: waiters come in the order they asked
        self._requested = 0
        self._covered = 0
        self.runs = 0

    async def __call__(self) -> None:
        self._requested += 1
        mine = self._requested
        async with self._running:
            if self._covered >= mine:
                return
            # Every request so far was made after its change: this run reads all of them.
            covers = self._requested
            await self._work()  # on failure nothing is covered: the next waiter runs it again
            self._covered = covers
            self.runs += 1
