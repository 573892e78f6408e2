"""Whether a depends_on condition holds, from the dependency's observed containers: decided
here, in pure code, so the actuator only looks and says what the plan decided."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from reconciler.plan import model

UNHEALTHY_RETRY = 2.0  # an unhealthy dependency may recover: looked at again this much later

# The await step's reason, as diff.py writes it, for each condition it waits for.
HEALTHY = "healthy"
COMPLETED = "completed successfully"


class Outcome(str, enum.Enum):
    READY = "ready"
    NOT_YET = "not yet"  # looked at again soon; not a failure
    FAILED = "failed"  # may come right by itself: retried after `retry_in`
    NEVER = "never"  # cannot come right without another submission


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str = ""
    retry_in: float | None = None


def verdict(service: str, condition: str,
            containers: Iterable[model.ObservedContainer]) -> Verdict:
    """`condition` is the await step's reason (HEALTHY or COMPLETED); `containers` those
    observed of the project (the dependency's are picked here)."""
    mine = [c for c in containers if c.service == service]
    if condition == HEALTHY:
        bad = [c for c in mine if c.health == "unhealthy"]
        if bad:
            return Verdict(Outcome.FAILED, f"container {bad[0].name} is unhealthy",
                           UNHEALTHY_RETRY)
        if mine and all(c.health == "healthy" for c in mine):
            return Verdict(Outcome.READY)
        if any(c.health is None and c.state is model.ContainerState.RUNNING for c in mine):
            return Verdict(Outcome.NEVER, f"service {service} has no healthcheck")
        return Verdict(Outcome.NOT_YET, f"waiting for {service} to be healthy")
    failed = [c for c in mine if c.state is model.ContainerState.EXITED
              and c.exit_code not in (0, None)]
    if failed:  # docker compose's words
        return Verdict(Outcome.NEVER, f'service "{service}" didn\'t complete successfully: '
                                      f"exit {failed[0].exit_code}")
    if mine and all(c.state is model.ContainerState.EXITED and c.exit_code == 0 for c in mine):
        return Verdict(Outcome.READY)
    return Verdict(Outcome.NOT_YET, f"waiting for {service} to be completed")
