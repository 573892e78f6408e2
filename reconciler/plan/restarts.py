"""Whether an exited container restarts, and after what delay: docker's restart manager as a pure function."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.plan import model

FIRST_DELAY = 0.1  # seconds, doubled on every restart in a row
MAX_DELAY = 60.0
STABLE_AFTER = 10.0  # a run at least this long resets the delay


@dataclass(frozen=True)
class RestartDecision:
    restart: bool
    delay: float  # the backoff state to keep, also when not restarting
    reason: str


def next_delay(previous_delay: float, ran_for: float) -> float:
    """Docker's sequence 0.1, 0.2, 0.4 ... 60 s; back to 0.1 after a run of 10 s or more."""
    if ran_for >= STABLE_AFTER or previous_delay <= 0:
        return FIRST_DELAY
    return min(previous_delay * 2, MAX_DELAY)


def decide(policy: model.RestartPolicy, *, exit_code: int, ran_for: float,
           previous_delay: float, restart_count: int, stopped_by_user: bool,
           stopped_before_agent: bool = False) -> RestartDecision:
    """The decision for one exit. `stopped_by_user` means `stop`/`kill` asked for it;
    `stopped_before_agent` that an earlier agent was asked, which `always` forgets as docker's
    restart manager does when the daemon starts again."""
    delay = next_delay(previous_delay, ran_for)
    if policy.name == "no":
        return RestartDecision(False, delay, "restart policy no")
    if stopped_by_user and not (policy.name == "always" and stopped_before_agent):
        return RestartDecision(False, delay, "stopped by user")
    if policy.name in ("always", "unless-stopped"):
        return RestartDecision(True, delay, f"restart policy {policy.name}")
    if exit_code == 0:
        return RestartDecision(False, delay, "exited 0, restart policy on-failure")
    if policy.max_retries and restart_count >= policy.max_retries:
        return RestartDecision(False, delay, f"gave up after {restart_count} restarts")
    return RestartDecision(True, delay, f"exited {exit_code}, restart policy {policy}")


def counted(container: model.ObservedContainer) -> model.RestartCount:
    """The accounting a restart by policy leaves: one more in a row, the next delay."""
    return model.RestartCount(container.restart_count + 1,
                              next_delay(container.restart_delay, container.ran_for))


def decide_for(container: model.ObservedContainer,
               policy: model.RestartPolicy) -> RestartDecision:
    return decide(policy, exit_code=container.exit_code or 0, ran_for=container.ran_for,
                  previous_delay=container.restart_delay,
                  restart_count=container.restart_count,
                  stopped_by_user=container.stopped_by_user,
                  stopped_before_agent=container.stopped_before_agent)
