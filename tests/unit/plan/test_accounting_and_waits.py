"""Decided in the plan, not the actuator: what a start leaves for the next exit's restart
decision, and whether a depends_on condition holds (the await step's verdict)."""

from __future__ import annotations

import dataclasses

import pytest

from reconciler.plan import diff, model, waits
from tests.unit.plan.test_diff import EXITED, nets, running, state, svc

ALWAYS = svc("web", restart=model.RestartPolicy.parse("always"))


def starts(desired, *containers, **options) -> list[str]:
    """Each step's golden line with the accounting it carries."""
    observed = model.ObservedState(tuple(containers), nets("default"), observed_at=100.0)
    return [f"{s} -> {s.restarts}"
            for s in diff.diff(desired, observed, model.DiffOptions(**options)).steps]


def test_a_restart_by_policy_counts_one_more_and_doubles_the_delay():
    crashed = running(ALWAYS, state=EXITED, exit_code=2, restart_count=3, restart_delay=0.4,
                      ran_for=1, finished_at=99.0)
    assert starts(state(ALWAYS), crashed) == [
        "#1 service:web:1 start (restart policy always) -> RestartCount(count=4, delay=0.8)"]


def test_a_long_run_starts_the_delay_again():
    crashed = running(ALWAYS, state=EXITED, exit_code=2, restart_count=3, restart_delay=6.4,
                      ran_for=60, finished_at=99.0)
    assert starts(state(ALWAYS), crashed) == [
        "#1 service:web:1 start (restart policy always) -> RestartCount(count=4, delay=0.1)"]


def test_a_start_asked_for_is_a_fresh_count():
    stopped = running(ALWAYS, state=EXITED, exit_code=0, restart_count=5, restart_delay=3.2,
                      stopped_by_user=True, finished_at=50.0)
    assert starts(state(ALWAYS), stopped, start_stopped=True, submitted_at=60.0) == [
        "#1 service:web:1 start (stopped) -> RestartCount(count=0, delay=0.0)"]


def test_other_steps_carry_no_accounting():
    changed = running(ALWAYS, config_hash="old")
    assert starts(state(ALWAYS), changed) == [
        "#1 service:web:1 recreate (config changed) -> None"]


DB = svc("db", has_healthcheck=True)


def db(**kw) -> model.ObservedContainer:
    return running(DB, **kw)


@pytest.mark.parametrize(("containers", "expected"), [
    ((), "not yet: waiting for db to be healthy"),
    ((db(health="starting"),), "not yet: waiting for db to be healthy"),
    ((db(health="healthy"), db(replica=2, name="demo-db-2", health="starting")),
     "not yet: waiting for db to be healthy"),
    ((db(health="healthy"),), "ready: "),
    ((db(health="unhealthy"),), "failed: container demo-db-1 is unhealthy (in 2.0s)"),
    ((db(health=None),), "never: service db has no healthcheck"),
])
def test_healthy(containers, expected):
    assert _said(waits.verdict("db", waits.HEALTHY, containers)) == expected


@pytest.mark.parametrize(("containers", "expected"), [
    ((db(),), "not yet: waiting for db to be completed"),
    ((db(state=EXITED, exit_code=0),), "ready: "),
    ((db(state=EXITED, exit_code=3),),
     'never: service "db" didn\'t complete successfully: exit 3'),
])
def test_completed_successfully(containers, expected):
    assert _said(waits.verdict("db", waits.COMPLETED, containers)) == expected


def test_only_the_dependencys_containers_count():
    other = dataclasses.replace(db(health="unhealthy"), service="cache", name="demo-cache-1")
    assert _said(waits.verdict("db", waits.HEALTHY, (other, db(health="healthy")))) == "ready: "


def _said(verdict: waits.Verdict) -> str:
    text = f"{verdict.outcome.value}: {verdict.reason}"
    return text + (f" (in {verdict.retry_in}s)" if verdict.retry_in else "")
