"""Single flight for work that rebuilds something whole from the records (the nft table): callers
that ask at the same time share runs instead of each running it.

A caller asks after it changed what the work reads, and returns once a run that began after its
request has finished, so what it wrote is covered. While one run goes on, later requests wait;
one follow-up run covers all of them: N concurrent requests cost two runs, not N.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable


class Flight:
    """One kind of work: a generation counter of requests and of the requests a run covered."""

    def __init__(self) -> None:
        self._running = threading.Lock()  # held by the one run in progress
        self._counts = threading.Lock()
        self._requested = 0
        self._covered = 0

    def run(self, work: Callable[[], None]) -> bool:
        """Have `work` run for this request; False when another caller's run covered it."""
        with self._counts:
            self._requested += 1
            mine = self._requested
        with self._running:
            if self._covered >= mine:
                return False
            with self._counts:
                # Everyone who asked until now changed the records before asking: this run,
                # which reads them after this point, covers them all.
                covers = self._requested
            work()  # on failure nothing is covered: each waiter runs it for itself
            self._covered = covers
            return True


_flights: dict[Hashable, Flight] = {}
_guard = threading.Lock()


def run(key: Hashable, work: Callable[[], None]) -> bool:
    """`Flight.run` on the flight of `key` (made on first use)."""
    with _guard:
        flight = _flights.setdefault(key, Flight())
    return flight.run(work)
