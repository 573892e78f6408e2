"""The actuator maps each step kind (what it acts on, and the action) to one function; every
kind the planner makes has one, and the planner decides everything the step needs."""

from __future__ import annotations

import dataclasses

import pytest

from controllers import context
from reconciler.agent import machine
from reconciler.plan import diff, model
from tests.unit.plan.test_diff import EXITED, nets, running, state, svc


@pytest.fixture
def table(tmp_path):
    made = machine.Machine(context.make(tmp_path / "root", tmp_path / "run"))
    try:
        yield made._step_table("demo")
    finally:
        made.store.close()


def test_every_step_the_planner_makes_has_its_function(table):
    always = svc("web", restart=model.RestartPolicy.parse("always"), volumes=("data",),
                 depends_on=(model.Dependency("db", model.Condition.HEALTHY),))
    db = svc("db", has_healthcheck=True)
    desired = state(always, db, volumes=("data",))
    desired = dataclasses.replace(desired, networks=desired.networks + (
        model.DesiredNetwork("outside", "outside", "n-x", external=True),))
    plans = [
        diff.diff(desired, model.ObservedState((), (), ())),
        diff.diff(desired, model.ObservedState(
            (running(always, state=EXITED, exit_code=1), running(db, health="healthy"),
             running(db, replica=2, name="demo-db-2")), nets("default", "old"), (),
            rules_drift="table gone")),
    ]
    kinds = {(s.resource.split(":", 1)[0], s.action) for p in plans for s in p.steps}
    assert kinds <= set(table), kinds - set(table)
    assert {k for k, _ in kinds} == {"service", "network", "volume", "rules"}
