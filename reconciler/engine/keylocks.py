"""One actor per key: the reconcile of a project and a user's verb on it take turns.

The work queue already keeps two reconciles of one key apart; a user's verb (stop, start,
kill, rm...) acts outside the queue, so both hold the key's lock while they look and act.
A reconcile that observed a container stopped must not plan from that look while a `start`
runs it again, or it makes a second one in its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable


class KeyLocks:
    """A FIFO lock per key, made on first use and dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._users: dict[Hashable, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                del self._locks[key]

    def held(self, key: Hashable) -> bool:
        """Whether someone holds or waits for `key` now."""
        return key in self._locks
