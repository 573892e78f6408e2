"""Per-key exponential backoff with jitter, forgotten on success."""

from __future__ import annotations

import random
from collections.abc import Hashable


class Backoff:
    """Delay for the n-th failure in a row of a key: base * factor**(n-1), capped, +- jitter."""

    def __init__(self, base: float = 0.1, cap: float = 60.0, factor: float = 2.0,
                 jitter: float = 0.1, rng: random.Random | None = None) -> None:
        self.base, self.cap, self.factor, self.jitter = base, cap, factor, jitter
        self._rng = rng or random.Random()
        self._failures: dict[Hashable, int] = {}

    def failures(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    def next_delay(self, key: Hashable) -> float:
        count = self._failures.get(key, 0)
        self._failures[key] = count + 1
        delay = min(self.cap, self.base * self.factor ** count)
        # Jitter spreads keys that failed together so they do not retry in lockstep.
        return delay * (1 + self.jitter * self._rng.uniform(-1, 1))

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)
