"""The worker loop: take a key, reconcile it, and decide its retry in one place."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

import structlog

from reconciler.engine import backoff as backoff_mod, errors, executor, workqueue

log = structlog.get_logger(__name__)

# A reconcile reads the world afresh for its key; it may ask to be looked at again later.
Reconcile = Callable[[Hashable], Awaitable[float | None]]


@dataclass(frozen=True)
class KeyStatus:
    """The last result for a key: ok, retrying (with when), or failed for good."""

    state: str
    reason: str = ""
    retry_in: float | None = None
    failures: int = 0


class Controller:
    """Runs `reconcile` for queued keys with `workers` keys in flight at most."""

    def __init__(self, name: str, reconcile: Reconcile, *,
                 queue: workqueue.WorkQueue | None = None,
                 backoff: backoff_mod.Backoff | None = None, workers: int = 4) -> None:
        self.name = name
        self.reconcile = reconcile
        self.queue = queue if queue is not None else workqueue.WorkQueue()
        self.backoff = backoff if backoff is not None else backoff_mod.Backoff()
        self.workers = workers
        self.status: dict[Hashable, KeyStatus] = {}
        self._ids = itertools.count(1)

    async def run(self) -> None:
        """Work until the queue shuts down or the task is cancelled."""
        async with asyncio.TaskGroup() as group:
            for _ in range(self.workers):
                group.create_task(self._worker())

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except workqueue.ShutDown:
                return
            try:
                await self.process(key)
            finally:
                self.queue.done(key)

    async def process(self, key: Hashable) -> KeyStatus:
        """One reconcile of `key`; its result sets when the key comes back."""
        # Bound in the context, so every event logged during this reconcile (steps too)
        # carries the same reconcile_id.
        with structlog.contextvars.bound_contextvars(
                controller=self.name, key=str(key), reconcile_id=next(self._ids)):
            try:
                requeue_after = await self.reconcile(key)
            except Exception as error:  # the one place failures are classified
                status = self._failed(key, errors.classify(error))
                before = self.status.get(key)
                # Said once: a key that fails the same way pass after pass (a service that
                # cannot be made, looked at on every resync) does not fill the log.
                same = before is not None and (before.state, before.reason) == \
                    (status.state, status.reason)
                # An error the engine does not know (a bug in observing, say) comes with its
                # traceback, once: the only way to find where it was raised.
                known = (errors.TemporaryError, errors.PermanentError, executor.StepsFailed)
                (log.debug if same else log.warning)(
                    "reconcile.failed", reason=status.reason, state=status.state,
                    retry_in=status.retry_in,
                    exc_info=None if same or isinstance(error, known) else error)
            else:
                self.backoff.forget(key)
                status = KeyStatus("ok", retry_in=requeue_after)
                if requeue_after is not None:
                    self.queue.add_after(key, requeue_after)
                log.debug("reconcile.finished", requeue_after=requeue_after)
        self.status[key] = status
        return status

    def _failed(self, key: Hashable, outcome: errors.Outcome) -> KeyStatus:
        failures = self.backoff.failures(key) + 1
        if outcome.final:
            self.backoff.forget(key)
            if outcome.delay is not None:
                self.queue.add_after(key, outcome.delay)
            return KeyStatus("failed", outcome.reason, None, failures)
        delay = outcome.delay if outcome.delay is not None else self.backoff.next_delay(key)
        if outcome.delay is not None:
            self.backoff.forget(key)
        self.queue.add_after(key, delay)
        return KeyStatus("retrying", outcome.reason, delay, failures)
