"""Runs a Plan's DAG: each step once its steps before are done, independent ones concurrently.

It holds no decision about desired state: what an action does is the caller's mapping
action -> coroutine; a failed step skips the steps that require it and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog

from reconciler.engine import clocks, errors
from reconciler.plan import plans

log = structlog.get_logger(__name__)

StepFunction = Callable[[plans.Step], Awaitable[None]]
Listener = Callable[["StepResult"], None]

# The running step's place among the `concurrency` that may act at once (None outside one).
_place: contextvars.ContextVar[_Place | None] = contextvars.ContextVar("place", default=None)


class Status(str, enum.Enum):
    STARTED = "started"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    WAITING = "waiting"  # not ready yet (errors.NotReady): the step runs in a later pass


@dataclass(frozen=True)
class StepResult:
    step: plans.Step
    status: Status
    reason: str = ""
    outcome: errors.Outcome | None = None  # for a failure: how to retry
    retry_in: float | None = None  # for a step not ready yet: when to look again
    error: BaseException | None = None  # for a failure: what was raised (its traceback)


@dataclass(frozen=True)
class Report:
    """The end state of every step of a plan, in plan order."""

    results: tuple[StepResult, ...]

    @property
    def failed(self) -> tuple[StepResult, ...]:
        return tuple(r for r in self.results if r.status is Status.FAILED)

    @property
    def skipped(self) -> tuple[StepResult, ...]:
        return tuple(r for r in self.results if r.status is Status.SKIPPED)

    @property
    def waiting(self) -> tuple[StepResult, ...]:
        return tuple(r for r in self.results if r.status is Status.WAITING)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped and not self.waiting

    def __str__(self) -> str:
        return "\n".join(f"#{r.step.number} {r.step.resource} {r.step.action.value}: "
                         f"{r.status.value}" + (f" ({r.reason})" if r.reason else "")
                         for r in self.results)

    def raise_for_failures(self) -> None:
        """Turn failed steps into one error with the retry policy of the most hopeful one."""
        if not self.failed:
            return
        summary = "; ".join(f"{r.step.resource} {r.step.action.value}: {r.reason}"
                            for r in self.failed)
        outcomes = [r.outcome for r in self.failed if r.outcome]
        if all(o.final for o in outcomes):
            raise errors.PermanentError(summary)
        delays = [o.delay for o in outcomes if not o.final]
        known = [d for d in delays if d is not None]
        if len(known) < len(delays):
            raise StepsFailed(summary)
        raise errors.TemporaryError(summary, delay=min(known))


class StepsFailed(Exception):
    """Some steps failed with errors that call for backoff."""


async def execute(plan: plans.Plan, functions: Mapping[plans.Action, StepFunction], *,
                  concurrency: int = 8, clock: clocks.Clock | None = None,
                  listener: Listener | None = None) -> Report:
    """Run every step of `plan`; returns when all are done, failed or skipped."""
    missing = {s.action for s in plan.steps} - set(functions)
    if missing:
        raise ValueError(f"no step function for {', '.join(sorted(a.value for a in missing))}")
    seen: set[int] = set()
    for step in plan.steps:
        # An edge to a later or unknown step would wait for ever: refuse the plan instead.
        bad = [e.after for e in step.after if e.after not in seen]
        if bad:
            raise ValueError(f"step #{step.number} waits for #{bad[0]}, which does not "
                             "come before it")
        seen.add(step.number)
    clock = clock if clock is not None else clocks.MonotonicClock()
    limit = asyncio.Semaphore(concurrency)
    finished: dict[int, asyncio.Future[StepResult]] = {
        s.number: asyncio.get_running_loop().create_future() for s in plan.steps}

    def report(result: StepResult) -> StepResult:
        if listener:
            listener(result)
        return result

    async def run(step: plans.Step) -> StepResult:
        for edge in step.after:
            before = await finished[edge.after]
            if edge.required and before.status is not Status.DONE:
                return report(StepResult(step, Status.SKIPPED,
                                         f"#{edge.after} {before.status.value}"))
        if step.delay:
            await clock.sleep(step.delay)
        place = _Place(limit)
        await place.take()
        _place.set(place)  # this task's own context: seen by its step alone
        try:
            report(StepResult(step, Status.STARTED))
            try:
                await functions[step.action](step)
            except errors.NotReady as not_ready:
                return report(StepResult(step, Status.WAITING, str(not_ready),
                                         retry_in=not_ready.delay))
            except Exception as error:  # every failure becomes a result
                outcome = errors.classify(error)
                # Said once, with its traceback when unexpected, by whoever keeps the
                # failures from pass to pass (failures.py): a retried step says it again.
                log.debug("step.failed", step=str(step), error=outcome.reason)
                return report(StepResult(step, Status.FAILED, outcome.reason, outcome,
                                         error=error))
        finally:
            place.give_up()
        return report(StepResult(step, Status.DONE))

    async def run_and_publish(step: plans.Step) -> None:
        finished[step.number].set_result(await run(step))

    async with asyncio.TaskGroup() as group:
        for step in plan.steps:
            group.create_task(run_and_publish(step))
    return Report(tuple(finished[s.number].result() for s in plan.steps))


class _Place:
    """A step's hold on the executor's semaphore, which it may give up and take again."""

    def __init__(self, limit: asyncio.Semaphore) -> None:
        self.limit = limit
        self.held = False

    async def take(self) -> None:
        await self.limit.acquire()
        self.held = True

    def give_up(self) -> None:
        if self.held:
            self.held = False
            self.limit.release()


@contextlib.asynccontextmanager
async def waiting():
    """Around a wait inside a step that costs the machine nothing (a process's grace period
    to end): other steps act meanwhile, so stopping 50 containers takes one grace period,
    not one per `concurrency` of them. Outside a step it does nothing."""
    place = _place.get()
    if place is None:
        yield
        return
    place.give_up()
    try:
        yield
    finally:
        await place.take()
