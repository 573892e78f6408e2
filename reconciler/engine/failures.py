"""What a project's plan steps failed with, so a failure is not retried on every pass.

A reconcile runs whenever anything of the project changes (a submission, a container's exit,
the resync tick), and each pass plans the failed steps again. Left at that, a step that cannot
succeed would run on every pass: a sibling that exits every second would retry it every second.
So the failures are remembered per step (resource and action):

- a final failure (PermanentError) holds the step until the desired state changes (a new
  generation: the user ran `up` again), except for the checks of the world outside (an external
  network, a dependency's health), which can come right without an `up`: those are checked
  again after a backoff;
- any other failure holds the step for its own delay (TemporaryError) or its own exponential
  backoff, however often the project is looked at meanwhile: only PermanentError gives up.

Each failure is logged once (with its traceback when it is not one of the engine's errors),
not once per retry.

What is held is left out of the plan, with the steps that require it; the rest runs.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import structlog

from reconciler.engine import backoff as backoff_mod, errors, executor
from reconciler.plan import plans

log = structlog.get_logger(__name__)

# Checks of the world outside the project: a final failure of one is looked at again later.
CHECKS = frozenset({plans.Action.REQUIRE, plans.Action.AWAIT})

StepKey = tuple[str, plans.Action]


@dataclass(frozen=True)
class Failure:
    """A failed step: why, and when it may run again (None: not before the next generation)."""

    step: str  # "resource action", as the reason shows it
    reason: str
    retry_at: float | None

    @property
    def final(self) -> bool:
        return self.retry_at is None

    def holds_at(self, now: float) -> bool:
        """Whether the step may not run yet at `now`."""
        return self.retry_at is None or self.retry_at > now


@dataclass(frozen=True)
class Held:
    """The steps left out of this pass, and the plan that is left."""

    plan: plans.Plan
    failures: tuple[Failure, ...]


class StepFailures:
    """The failed steps of every project, forgotten when its desired state changes."""

    def __init__(self, backoff: backoff_mod.Backoff | None = None) -> None:
        self.backoff = backoff if backoff is not None else backoff_mod.Backoff()
        self._versions: dict[str, Hashable] = {}
        self._failed: dict[str, dict[StepKey, Failure]] = {}

    def failures(self, project: str) -> tuple[Failure, ...]:
        return tuple(self._failed.get(project, {}).values())

    def hold(self, project: str, version: Hashable, plan: plans.Plan, now: float) -> Held:
        """The plan without the steps that wait for their retry (and those requiring them);
        `version` names the desired state: another one forgets every failure."""
        if self._versions.get(project) != version:
            self.forget(project)
            self._versions[project] = version
        failed = self._failed.get(project, {})
        planned = {_key(s) for s in plan.steps}
        for key in [k for k in failed if k not in planned]:
            # The step is no longer needed (done another way, or no longer wanted).
            del failed[key]
            self.backoff.forget((project, *key))
        held = [s.number for s in plan.steps if _key(s) in failed
                and failed[_key(s)].holds_at(now)]
        return Held(plan.without(held), tuple(failed[_key(plan.step(n))] for n in held))

    def record(self, project: str, report: executor.Report, now: float) -> None:
        """Remember this pass's failures and forget the steps that succeeded."""
        failed = self._failed.setdefault(project, {})
        for result in report.results:
            key = _key(result.step)
            if result.status is executor.Status.DONE:
                failed.pop(key, None)
                self.backoff.forget((project, *key))
            elif result.status is executor.Status.FAILED:
                before = failed.get(key)
                failed[key] = failure = self._failure(project, result, now)
                _tell(project, result, failure, again=before is not None
                      and before.reason == failure.reason)

    def _failure(self, project: str, result: executor.StepResult, now: float) -> Failure:
        outcome = result.outcome or errors.Outcome(False, None, result.reason)
        key = (project, result.step.resource, result.step.action)
        name = f"{result.step.resource} {result.step.action.value}"
        if outcome.final and result.step.action not in CHECKS:
            self.backoff.forget(key)
            return Failure(name, outcome.reason, None)
        if outcome.delay is not None and not outcome.final:
            self.backoff.forget(key)
            delay = outcome.delay
        else:
            delay = self.backoff.next_delay(key)
        return Failure(name, outcome.reason, now + delay)

    def verdict(self, project: str, now: float, look_again: float | None) -> Exception | None:
        """The error this pass ends with while steps are held, for the project's status:
        TemporaryError due when the first held step may run again, PermanentError when only
        the next generation can change anything; None when no step is held."""
        failures = self.failures(project)
        if not failures:
            return None
        summary = "; ".join(f"{f.step}: {f.reason}" for f in failures)
        due = [f.retry_at - now for f in failures if f.retry_at is not None]
        if due:
            delay = max(0.0, min(due))
            return errors.TemporaryError(summary, delay if look_again is None
                                         else min(delay, look_again))
        return errors.PermanentError(summary, requeue_after=look_again)

    def forget(self, project: str) -> None:
        for key in self._failed.pop(project, {}):
            self.backoff.forget((project, *key))
        self._versions.pop(project, None)


def _tell(project: str, result: executor.StepResult, failure: Failure, again: bool) -> None:
    """A step's failure in the log once: its retries, failing the same way, say it at debug
    level only. An error neither of the engine's own (a bug, an OSError nobody classified) is
    logged with its traceback, the one place to find where it came from."""
    error = result.error
    unexpected = error is not None and not isinstance(
        error, (errors.TemporaryError, errors.PermanentError))
    (log.debug if again else log.warning)(
        "step.failed", project=project, resource=result.step.resource,
        action=result.step.action.value, error=failure.reason, final=failure.final,
        retry_at=failure.retry_at, exc_info=error if unexpected and not again else None)


def _key(step: plans.Step) -> StepKey:
    return (step.resource, step.action)
