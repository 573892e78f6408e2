"""One reconcile of a project: desired in, observe, diff, execute. The runtime plugs in here.

Three small protocols are the sockets: `DesiredSource` (the agent's store, turned into
plan values by the spec), `Observer` (reads the machine) and `Actuator` (the step
functions per action). Unit tests plug in a fake machine; the agent plugs in the runtime.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Protocol

import structlog

from reconciler.engine import clocks, errors, executor, failures as failures_mod, keylocks
from reconciler.plan import diff, model, plans

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Desired:
    """A project's desired state; `generation` grows with every submission (`up`)."""

    state: model.DesiredState
    options: model.DiffOptions
    generation: int


class DesiredSource(Protocol):
    async def desired(self, project: str) -> Desired | None:
        """None: the project is unknown (never submitted, or removed and gone)."""

    async def applied(self, project: str, generation: int) -> None:
        """Every step of this generation's first plan succeeded."""

    async def applied_generation(self, project: str) -> int: ...


class Observer(Protocol):
    async def observe(self, project: str) -> model.ObservedState: ...


class Actuator(Protocol):
    def functions(self, project: str) -> Mapping[plans.Action, executor.StepFunction]: ...


@dataclass
class ProjectReconciler:
    """The `reconcile` of the engine's Controller, for keys that are project names."""

    source: DesiredSource
    observer: Observer
    actuator: Actuator
    concurrency: int = 8
    resync: float | None = 10.0  # look again this long after a converged pass: drift's backstop
    settle: float = 0.5  # look again this soon after a pass that changed something
    clock: clocks.Clock | None = None
    listener: Callable[[str, executor.StepResult], None] | None = None
    plan_listener: Callable[[str, plans.Plan], None] | None = None
    # Failed steps wait for their retry here, not on every pass (failures.py).
    failures: failures_mod.StepFailures = dataclasses.field(
        default_factory=failures_mod.StepFailures)
    # Shared with the user's verbs on the project's containers: one of them acts at a time.
    locks: keylocks.KeyLocks = dataclasses.field(default_factory=keylocks.KeyLocks)
    # project -> its desired version and the (resource, action) of its steps whose last
    # result was "not ready yet": their next tries are not told to the listener again until
    # they end another way (a new submission tells them again, to its own `up`).
    _waiting: dict[str, tuple[Hashable, set[tuple[str, plans.Action]]]] = dataclasses.field(
        default_factory=dict)

    async def __call__(self, project: str) -> float | None:
        # From the look to the last step: a verb's change meanwhile would make the plan wrong.
        async with self.locks.hold(project):
            return await self._reconcile(project)

    async def _reconcile(self, project: str) -> float | None:
        wanted = await self.source.desired(project)
        if wanted is None:
            self.failures.forget(project)
            self._waiting.pop(project, None)
            return None
        first_pass = wanted.generation > await self.source.applied_generation(project)
        # Only the first pass after an `up` starts what is stopped; later passes follow
        # restart policies, so a finished one-shot job is not run again.
        options = _with_start(wanted.options, first_pass)
        observed = await self.observer.observe(project)
        try:
            planned = diff.diff(wanted.state, observed, options)
        except ValueError as error:  # the plan is pure: the same stack fails the same way
            raise errors.PermanentError(str(error), requeue_after=self.resync) from None
        clock = self.clock if self.clock is not None else clocks.MonotonicClock()
        # Generations start again at 1 after a `down`: the submission time tells them apart.
        version = (wanted.generation, wanted.options.submitted_at)
        held = self.failures.hold(project, version, planned, clock.now())
        if project not in self._waiting or self._waiting[project][0] != version:
            self._waiting[project] = (version, set())
        plan = held.plan
        if self.plan_listener:
            self.plan_listener(project, plan)
        if not plan:
            verdict = self.failures.verdict(project, clock.now(), self.resync)
            if verdict is not None:  # steps are held: their failure is the pass's result
                raise verdict
            if first_pass:
                await self.source.applied(project, wanted.generation)
            return self.resync
        log.info("plan.made", project=project, steps=len(plan.steps),
                 generation=wanted.generation, held=len(held.failures))
        now, later = plan.due()
        report = await executor.execute(
            now, self.actuator.functions(project), concurrency=self.concurrency,
            clock=self.clock, listener=self._listener_for(project))
        self.failures.record(project, report, clock.now())
        look_again = self.settle if later is None else min(later, self.resync or later)
        waits = [r.retry_in for r in report.waiting if r.retry_in is not None]
        if waits:  # a dependency not ready: looked at again soon, the key free meanwhile
            look_again = min(look_again, *waits)
        failed = self.failures.verdict(project, clock.now(), look_again)
        if failed is not None:
            raise failed
        if first_pass and later is None and not report.waiting and not report.skipped:
            await self.source.applied(project, wanted.generation)
        return look_again

    def _listener_for(self, project: str) -> executor.Listener | None:
        if self.listener is None:
            return None
        listener = self.listener
        waiting = self._waiting[project][1]

        def listen(result: executor.StepResult) -> None:
            # A wait retried pass after pass is told once (`Waiting`), then its end.
            key = (result.step.resource, result.step.action)
            if result.status in (executor.Status.STARTED, executor.Status.WAITING) \
                    and key in waiting:
                return
            if result.status is executor.Status.WAITING:
                waiting.add(key)
            elif result.status is not executor.Status.STARTED:
                waiting.discard(key)
            listener(project, result)
        return listen


def _with_start(options: model.DiffOptions, first_pass: bool) -> model.DiffOptions:
    # A moved tag recreates on the first pass of a submission only (diff: image_check).
    return dataclasses.replace(options, start_stopped=first_pass and options.start_stopped,
                               image_check=first_pass)
