"""The two errors that set the retry policy of a key, and how any failure is classified."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


class TemporaryError(Exception):
    """Try again after `delay` seconds (the thing is not ready yet)."""

    def __init__(self, message: str, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(Exception):
    """Retrying will not help until the desired state changes; the reason is shown to the user.
    `requeue_after`: look at the key again then all the same, for what else it has to do."""

    def __init__(self, message: str, requeue_after: float | None = None) -> None:
        super().__init__(message)
        self.requeue_after = requeue_after


class NotReady(Exception):
    """A step's precondition does not hold yet (a dependency not healthy, not completed): no
    failure. The pass ends without the step and those requiring it, and the key comes back
    after `delay`: a wait never holds the key, so a user's verb acts meanwhile."""

    def __init__(self, message: str, delay: float = 0.25) -> None:
        super().__init__(message)
        self.delay = delay


@dataclass(frozen=True)
class Outcome:
    """What a failure means for the key: retry after `delay` (None: use backoff), or give up
    (and look again after `delay`, if given, for the rest of the key's work)."""

    final: bool
    delay: float | None
    reason: str


def classify(error: BaseException) -> Outcome:
    """The one place that maps an exception to a retry policy. Cancellation is never a failure."""
    if isinstance(error, asyncio.CancelledError):
        raise error
    if isinstance(error, TemporaryError):
        return Outcome(False, error.delay, str(error))
    if isinstance(error, PermanentError):
        return Outcome(True, error.requeue_after, str(error))
    return Outcome(False, None, f"{type(error).__name__}: {error}")
