"""Golden plans: desired x observed -> the exact steps, in text."""

from __future__ import annotations

import dataclasses

import pytest

from reconciler.plan import diff, model

P = "demo"
RUNNING = model.ContainerState.RUNNING
EXITED = model.ContainerState.EXITED


def svc(name, **kw) -> model.DesiredService:
    kw.setdefault("config_hash", f"h-{name}")
    kw.setdefault("image", "busybox")
    kw.setdefault("image_id", "sha256:aaa")
    kw.setdefault("networks", ("default",))
    return model.DesiredService(P, name, **kw)


def state(*services, volumes=()) -> model.DesiredState:
    nets = {n for s in services for n in s.networks}
    return model.DesiredState(
        P, tuple(services),
        tuple(model.DesiredNetwork(n, f"{P}_{n}", f"n-{n}") for n in sorted(nets)),
        tuple(model.DesiredVolume(v, f"{P}_{v}", f"v-{v}") for v in volumes))


def running(service: model.DesiredService, replica=1, **kw) -> model.ObservedContainer:
    kw.setdefault("name", f"{P}-{service.name}-{replica}")
    kw.setdefault("config_hash", service.config_hash)
    kw.setdefault("image_id", service.image_id)
    kw.setdefault("state", RUNNING)
    kw.setdefault("limits", service.limits)
    return model.ObservedContainer(project=P, service=service.name, replica=replica, **kw)


def nets(*keys) -> tuple[model.ObservedNetwork, ...]:
    return tuple(model.ObservedNetwork(f"{P}_{k}", P, k, f"n-{k}") for k in keys)


def plan_text(desired, *containers, networks=("default",), volumes=(), **options) -> str:
    observed = model.ObservedState(tuple(containers), nets(*networks), tuple(volumes))
    return str(diff.diff(desired, observed, model.DiffOptions(**options)))


WEB = svc("web")
DB = svc("db", has_healthcheck=True)


def test_fresh_project_creates_network_volume_and_containers_in_dependency_order():
    web = svc("web", replicas=2, volumes=("data",),
              depends_on=(model.Dependency("db", model.Condition.HEALTHY),))
    plan = plan_text(state(web, DB, volumes=("data",)), networks=())
    assert plan == "\n".join([
        "#1 network:default create",
        "#2 volume:data create",
        "#3 service:db:1 create after #1",
        "#4 service:db await (healthy) after #3",
        "#5 service:web:1 create after #1, #2, #4",
        "#6 service:web:2 create after #1, #2, #4",
    ])


def test_nothing_to_do_when_everything_matches():
    assert plan_text(state(WEB, DB), running(WEB), running(DB)) == ""


def test_config_change_recreates_only_that_service():
    changed = dataclasses.replace(WEB, config_hash="h-web-2")
    assert plan_text(state(changed, DB), running(WEB), running(DB)) == \
        "#1 service:web:1 recreate (config changed)"


def test_image_change_recreates_on_the_first_pass_of_a_submission():
    changed = dataclasses.replace(WEB, image_id="sha256:bbb")
    assert plan_text(state(changed), running(WEB), image_check=True) == \
        "#1 service:web:1 recreate (image changed)"


def test_a_moved_tag_recreates_nothing_on_a_resync_nor_with_no_recreate():
    changed = dataclasses.replace(WEB, image_id="sha256:bbb")
    assert plan_text(state(changed), running(WEB)) == ""
    assert plan_text(state(changed), running(WEB), image_check=True, no_recreate=True) == ""


def test_unresolved_image_is_not_a_change():
    unknown = dataclasses.replace(WEB, image_id=None)
    assert plan_text(state(unknown), running(WEB)) == ""


def test_network_membership_change_recreates_a_running_container():
    moved = svc("web", networks=("default", "back"))
    plan = plan_text(state(moved), running(WEB, networks=(f"{P}_default",)),
                     networks=("default", "back"))
    assert plan == "#1 service:web:1 recreate (networks changed)"


def test_recreated_network_recreates_its_containers_after_it():
    desired = state(WEB)
    observed = model.ObservedState((running(WEB),),
                                   (model.ObservedNetwork(f"{P}_default", P, "default", "old"),))
    assert str(diff.diff(desired, observed)) == "\n".join([
        "#1 network:default recreate (config changed)",
        "#2 service:web:1 recreate (network recreated) after #1",
    ])


def test_limits_only_change_updates_in_place():
    limited = dataclasses.replace(WEB, limits=model.Limits(memory=64 << 20))
    assert plan_text(state(limited), running(WEB)) == "#1 service:web:1 update (limits changed)"


def test_limits_and_config_change_recreates_once_with_the_new_limits():
    changed = dataclasses.replace(WEB, config_hash="h-web-2",
                                  limits=model.Limits(memory=64 << 20))
    assert plan_text(state(changed), running(WEB)) == "#1 service:web:1 recreate (config changed)"


def test_limits_change_of_a_stopped_container_recreates_it_when_it_must_start():
    limited = dataclasses.replace(WEB, limits=model.Limits(pids=10))
    assert plan_text(state(limited), running(WEB, state=EXITED), start_stopped=True) == \
        "#1 service:web:1 recreate (limits changed)"


def test_force_and_no_recreate():
    assert plan_text(state(WEB), running(WEB), force_recreate=True) == \
        "#1 service:web:1 recreate (forced)"
    changed = dataclasses.replace(WEB, config_hash="new")
    assert plan_text(state(changed), running(WEB), no_recreate=True) == ""


def test_scale_up_and_down_highest_replica_first():
    assert plan_text(state(WEB), running(WEB), scale=(("web", 3),)) == "\n".join([
        "#1 service:web:2 create",
        "#2 service:web:3 create",
    ])
    three = [running(WEB, n) for n in (1, 2, 3)]
    assert plan_text(state(WEB), *three) == "\n".join([
        "#1 service:web:3 remove (scale down)",
        "#2 service:web:2 remove (scale down)",
    ])


def test_duplicate_replica_keeps_the_exactly_named_one():
    stray = running(WEB, name=f"{P}-web-1-stray")
    plan = diff.diff(state(WEB), model.ObservedState((stray, running(WEB)), nets("default")))
    assert str(plan) == "#1 service:web:1 remove (duplicate)"
    assert plan.step(1).observed.name == f"{P}-web-1-stray"


def test_orphans_warned_about_unless_removed():
    old = running(svc("old"))
    plan = diff.diff(state(WEB), model.ObservedState((running(WEB), old), nets("default")))
    assert not plan
    assert "Found orphan containers (demo-old-1)" in plan.warnings[0]
    assert plan_text(state(WEB), running(WEB), old, remove_orphans=True) == \
        "#1 service:old:1 remove (orphan)"


def test_down_removes_containers_then_networks_and_volumes_only_with_v():
    vols = (model.ObservedVolume(f"{P}_data", P, "data"),)
    empty = model.DesiredState(P)
    down = plan_text(empty, running(WEB), running(DB), volumes=vols, remove_orphans=True)
    assert down == "\n".join([
        "#1 service:db:1 remove (orphan)",
        "#2 service:web:1 remove (orphan)",
        "#3 network:default remove (orphan) after #1, #2",
    ])
    down_v = plan_text(empty, running(WEB), volumes=vols, remove_orphans=True,
                       remove_volumes=True)
    assert down_v.splitlines()[-1] == "#3 volume:data remove (orphan) after #1"


def test_other_projects_are_not_touched():
    stranger = dataclasses.replace(running(svc("x")), project="other")
    assert plan_text(state(WEB), running(WEB), stranger, remove_orphans=True) == ""


def test_external_network_missing_is_required_and_blocks_its_services():
    desired = model.DesiredState(P, (WEB,), (model.DesiredNetwork("default", "shared",
                                                                  external=True),))
    assert plan_text(desired, networks=()) == "\n".join([
        "#1 network:default require (external)",
        "#2 service:web:1 create after #1",
    ])


def test_depends_on_conditions_optional_and_restart():
    worker = svc("worker", depends_on=(
        model.Dependency("db", model.Condition.STARTED, restart=True),
        model.Dependency("migrate", model.Condition.COMPLETED, required=False)))
    migrate = svc("migrate", restart=model.RestartPolicy.parse("no"))
    changed_db = dataclasses.replace(DB, config_hash="new")
    plan = plan_text(state(changed_db, migrate, worker), running(DB),
                     running(migrate, state=EXITED, exit_code=0), running(worker))
    assert plan == "\n".join([
        "#1 service:db:1 recreate (config changed)",
        "#2 service:migrate await (completed successfully)",
        "#3 service:worker:1 restart (dependency db restarted) after #1, #2?",
    ])


def test_exited_container_follows_restart_policy():
    always = svc("web", restart=model.RestartPolicy.parse("always"))
    crashed = running(always, state=EXITED, exit_code=2, restart_delay=0.4, ran_for=1,
                      finished_at=50.0)
    observed = model.ObservedState((crashed,), nets("default"), observed_at=50.0)
    assert str(diff.diff(state(always), observed)) == \
        "#1 service:web:1 start (restart policy always) in 0.8s"
    unknown_exit_time = dataclasses.replace(crashed, finished_at=None)
    assert plan_text(state(always), unknown_exit_time) == \
        "#1 service:web:1 start (restart policy always)"
    never = svc("web", restart=model.RestartPolicy.parse("no"))
    assert plan_text(state(never), running(never, state=EXITED, exit_code=2)) == ""
    # An explicit `up` starts it whatever the policy says.
    assert plan_text(state(never), running(never, state=EXITED, exit_code=2),
                     start_stopped=True) == "#1 service:web:1 start (stopped)"


def test_up_starts_what_stopped_before_it_not_what_ran_for_it():
    never = svc("web", restart=model.RestartPolicy.parse("no"))
    before = running(never, state=EXITED, exit_code=3, finished_at=90.0)
    assert plan_text(state(never), before, start_stopped=True, submitted_at=100.0) == \
        "#1 service:web:1 start (stopped)"
    # It exited after the `up`: it ran for it; a pass retried after a failure leaves it.
    since = dataclasses.replace(before, finished_at=101.0)
    assert plan_text(state(never), since, start_stopped=True, submitted_at=100.0) == ""


def test_created_container_is_started_and_paused_one_only_by_up():
    assert plan_text(state(WEB), running(WEB, state=model.ContainerState.CREATED)) == \
        "#1 service:web:1 start (created)"
    paused = running(WEB, state=model.ContainerState.PAUSED)
    assert plan_text(state(WEB), paused) == ""
    assert plan_text(state(WEB), paused, start_stopped=True) == \
        "#1 service:web:1 unpause (paused)"


def test_container_name_cannot_scale():
    named = svc("web", container_name="front", replicas=3)
    plan = diff.diff(state(named), model.ObservedState(networks=nets("default")))
    assert str(plan) == "\n".join([
        "#1 service:web:1 create",
        'warning: service "web" sets container_name and cannot be scaled to 3; running 1',
    ])
    assert plan.step(1).desired.name == "front"


def test_dependency_cycle_is_an_error_naming_the_services():
    a = svc("a", depends_on=(model.Dependency("b"),))
    b = svc("b", depends_on=(model.Dependency("a"),))
    with pytest.raises(ValueError, match="dependency cycle a -> b -> a"):
        diff.diff(state(a, b), model.ObservedState())


def test_volume_config_mismatch_is_kept_with_a_warning():
    desired = state(WEB, volumes=("data",))
    observed = model.ObservedState((running(WEB),), nets("default"),
                                   (model.ObservedVolume(f"{P}_data", P, "data", "other"),))
    plan = diff.diff(desired, observed)
    assert not plan
    assert 'volume "demo_data" exists but does not match' in plan.warnings[0]


def test_what_is_left_of_a_restart_delay_counts_from_the_exit():
    always = svc("web", restart=model.RestartPolicy.parse("always"))
    crashed = running(always, state=EXITED, exit_code=1, restart_delay=0.4, ran_for=1,
                      finished_at=100.0)
    observed = model.ObservedState((crashed,), nets("default"), observed_at=100.5)
    assert str(diff.diff(state(always), observed)) == \
        "#1 service:web:1 start (restart policy always) in 0.3s"
    later = dataclasses.replace(observed, observed_at=101.0)
    assert str(diff.diff(state(always), later)) == "#1 service:web:1 start (restart policy always)"


def test_a_delayed_step_and_what_requires_it_wait_for_a_later_pass():
    always = svc("db", restart=model.RestartPolicy.parse("always"), has_healthcheck=True)
    web = svc("web", depends_on=(model.Dependency("db", model.Condition.HEALTHY),))
    cache = svc("cache")
    crashed = running(always, state=EXITED, exit_code=1, restart_delay=1.6, ran_for=1,
                      finished_at=7.0)
    plan = diff.diff(state(always, web, cache),
                     model.ObservedState((crashed,), nets("default"), observed_at=7.0))
    now, later = plan.due()
    assert str(plan) == "\n".join([
        "#1 service:cache:1 create",
        "#2 service:db:1 start (restart policy always) in 3.2s",
        "#3 service:db await (healthy) after #2",
        "#4 service:web:1 create after #3",
    ])
    assert (str(now), later) == ("#1 service:cache:1 create", 3.2)


def test_a_container_whose_monitor_is_gone_is_made_again():
    lost = running(WEB, monitored=False)
    assert plan_text(state(WEB), lost) == "#1 service:web:1 recreate (monitor lost)"
    created = running(WEB, monitored=False, state=model.ContainerState.CREATED)
    assert plan_text(state(WEB), created, start_stopped=True) == \
        "#1 service:web:1 recreate (monitor lost)"
    # --no-recreate keeps configs as they are, not a container nobody watches.
    assert plan_text(state(WEB), lost, no_recreate=True) == \
        "#1 service:web:1 recreate (monitor lost)"


def test_an_exited_container_needs_no_monitor():
    done = running(WEB, state=EXITED, exit_code=0, monitored=False)
    assert plan_text(state(WEB), done) == ""


def test_two_services_wanting_one_container_name_are_refused():
    a = svc("a", container_name="shared")
    b = svc("b", container_name="shared")
    with pytest.raises(ValueError, match='services.b.container_name: "shared" is also the '
                                         'name of a container of service "a"'):
        diff.diff(state(a, b), model.ObservedState(networks=nets("default")))
    # Another service's default name is taken just the same.
    c = svc("c", container_name=f"{P}-a-1")
    with pytest.raises(ValueError, match=f'"{P}-a-1" is also the name'):
        diff.diff(state(svc("a"), c), model.ObservedState(networks=nets("default")))
