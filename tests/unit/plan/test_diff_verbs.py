"""Golden plans of the verbs that shape a submission beside `up`: `create` (no_start) and
`rm` (removed replicas)."""

from __future__ import annotations

from reconciler.plan import diff, model
from tests.unit.plan.test_diff import DB, WEB, nets, plan_text, running, state, svc

CREATED = model.ContainerState.CREATED
EXITED = model.ContainerState.EXITED
HEALTHY_DB = model.Dependency("db", model.Condition.HEALTHY)


def test_create_makes_containers_without_starting_them_or_waiting_for_health():
    web = svc("web", depends_on=(HEALTHY_DB,))
    assert plan_text(state(web, DB), networks=(), no_start=True) == "\n".join([
        "#1 network:default create",
        "#2 service:db:1 create (not started) after #1",
        "#3 service:web:1 create (not started) after #1, #2",
    ])


def test_what_create_made_stays_created_until_up_or_start():
    made = running(WEB, state=CREATED, stopped_by_user=True)
    assert plan_text(state(WEB), made, no_start=True) == ""
    # A later submission that starts nothing stopped (scale of another service) leaves it.
    assert plan_text(state(WEB), made) == ""
    assert plan_text(state(WEB), made, start_stopped=True) == \
        "#1 service:web:1 start (created)"
    # A container created otherwise (an agent stopped between create and start) starts.
    assert plan_text(state(WEB), running(WEB, state=CREATED)) == \
        "#1 service:web:1 start (created)"


def test_create_does_not_stop_what_runs_when_it_recreates():
    plan = diff.diff(state(WEB, DB), model.ObservedState(
        (running(DB, state=EXITED, exit_code=0), running(WEB)), nets("default")),
        model.DiffOptions(no_start=True, force_recreate=True))
    assert str(plan).splitlines() == [
        "#1 service:db:1 recreate (forced, not started)",
        "#2 service:web:1 recreate (forced)",
    ]
    assert [s.desired.start for s in plan.steps] == [False, True]


def test_a_removed_replica_is_not_made_again_and_the_others_are_kept():
    web = svc("web", replicas=3)
    removed = ("service:web:2",)
    assert plan_text(state(web), running(web, 1), running(web, 3), removed=removed) == ""
    # Made again by a pass that looked before the removal: it goes.
    assert plan_text(state(web), running(web, 1), running(web, 2), running(web, 3),
                     removed=removed) == "#1 service:web:2 remove (removed)"
    # An `up` stores a new submission without it: the replica is made again.
    assert plan_text(state(web), running(web, 1), running(web, 3)) == \
        "#1 service:web:2 create"


def test_a_dependent_does_not_wait_for_a_service_whose_containers_were_removed():
    web = svc("web", depends_on=(HEALTHY_DB,))
    assert plan_text(state(web, DB), removed=("service:db:1",)) == "#1 service:web:1 create"
