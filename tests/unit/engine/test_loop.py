"""A project's reconcile end to end on the FakeMachine: converge, stay put, follow changes."""

from __future__ import annotations

import dataclasses

import pytest

from reconciler.engine import backoff, clocks, errors, executor, loop
from reconciler.plan import model
from tests.unit.engine import fakes

P = "demo"


def web(**kw):
    kw.setdefault("replicas", 2)
    kw.setdefault("restart", model.RestartPolicy.parse("no"))
    return model.DesiredService(P, "web", "h1", "busybox", "sha256:a", networks=("default",),
                                **kw)


def state(*services):
    return model.DesiredState(P, services, (model.DesiredNetwork("default", f"{P}_default"),))


@pytest.fixture
def machine():
    return fakes.FakeMachine()


@pytest.fixture
def source():
    return fakes.FakeSource()


def reconciler(source, machine, **kw):
    return loop.ProjectReconciler(source, machine, machine, resync=30.0, **kw)


async def test_converges_then_does_nothing(source, machine):
    source.submit(state(web()))
    reconcile = reconciler(source, machine)
    assert await reconcile(P) == 0.5
    assert sorted(machine.containers) == ["demo-web-1", "demo-web-2"]
    machine.log.clear()
    assert await reconcile(P) == 30.0
    assert machine.log == []


async def test_scale_and_limits_change_touch_only_what_changed(source, machine):
    reconcile = reconciler(source, machine)
    source.submit(state(web()))
    await reconcile(P)
    machine.log.clear()
    source.submit(state(web(replicas=1, limits=model.Limits(pids=50))))
    await reconcile(P)
    assert machine.log == ["service:web:1 update", "service:web:2 remove"]


async def test_exited_job_is_started_by_up_but_not_by_later_passes(source, machine):
    reconcile = reconciler(source, machine)
    source.submit(state(web(replicas=1)))
    await reconcile(P)
    stopped = dataclasses.replace(machine.containers["demo-web-1"],
                                  state=model.ContainerState.EXITED, exit_code=0)
    machine.containers["demo-web-1"] = stopped
    machine.log.clear()
    assert await reconcile(P) == 30.0  # restart: "no" -> stays exited
    assert machine.log == []
    source.submit(state(web(replicas=1)))  # a new `up`
    await reconcile(P)
    assert machine.log == ["service:web:1 start"]


async def test_a_failing_step_raises_for_the_controller_and_reports_every_step(source, machine):
    seen = []
    clock = clocks.FakeClock()
    reconcile = reconciler(source, machine, clock=clock,
                           listener=lambda project, r: seen.append((r.step.resource, r.status)))
    machine.fail["network:default"] = errors.TemporaryError("bridge busy", delay=2)
    source.submit(state(web(replicas=1)))
    with pytest.raises(errors.TemporaryError, match="bridge busy"):
        await reconcile(P)
    assert ("service:web:1", executor.Status.SKIPPED) in seen
    assert await source.applied_generation(P) == 0
    del machine.fail["network:default"]
    await clock.advance(2)  # its delay is over
    await reconcile(P)
    assert "demo-web-1" in machine.containers
    assert await source.applied_generation(P) == 1


async def test_unknown_project_is_left_alone(source, machine):
    assert await reconciler(source, machine)(P) is None


async def test_a_restart_delay_does_not_hold_the_key(source, machine):
    reconcile = reconciler(source, machine)
    always = web(replicas=1, restart=model.RestartPolicy.parse("always"))
    source.submit(state(always))
    await reconcile(P)
    machine.containers["demo-web-1"] = dataclasses.replace(
        machine.containers["demo-web-1"], state=model.ContainerState.EXITED, exit_code=1,
        ran_for=1.0, restart_delay=0.4, finished_at=10.0)
    machine.now = 10.0
    machine.log.clear()
    assert await reconcile(P) == 0.8  # come back when the backoff is over, start nothing now
    assert machine.log == []
    machine.now = 10.8
    await reconcile(P)
    assert machine.log == ["service:web:1 start"]


def cache(**kw):
    return model.DesiredService(P, "cache", "h2", "busybox", "sha256:a", networks=("default",),
                                **kw)


async def test_a_permanent_failure_is_held_until_the_next_generation(source, machine):
    seen = []
    reconcile = reconciler(source, machine,
                           listener=lambda project, r: seen.append((r.step.resource, r.status)))
    machine.fail["service:web:1"] = errors.PermanentError("secret s: file ./s is a directory")
    source.submit(state(web(replicas=1), cache()))
    with pytest.raises(errors.PermanentError, match="service:web:1 create: secret s"):
        await reconcile(P)
    assert "demo-cache-1" in machine.containers  # the rest of the stack came up
    machine.log.clear()
    for _ in range(5):  # resyncs, exits of other containers: nothing tries it again
        with pytest.raises(errors.PermanentError, match="secret s") as caught:
            await reconcile(P)
        assert caught.value.requeue_after == 30.0
    assert machine.log == []
    assert seen.count(("service:web:1", executor.Status.FAILED)) == 1
    del machine.fail["service:web:1"]
    source.submit(state(web(replicas=1), cache()))  # `up` again
    assert await reconcile(P) == 0.5
    assert machine.log == ["service:web:1 create"]


async def test_a_temporary_failure_waits_for_its_own_backoff(source, machine):
    clock = clocks.FakeClock()
    reconcile = reconciler(source, machine, clock=clock)
    reconcile.failures.backoff = backoff.Backoff(base=0.125, jitter=0.0)
    machine.fail["service:web:1"] = RuntimeError("device busy")
    source.submit(state(web(replicas=1)))
    runs = []
    for _ in range(40):  # looked at every 1/8 s for 5 s
        machine.log.clear()
        with pytest.raises(errors.TemporaryError, match="device busy"):
            await reconcile(P)
        if "service:web:1 create" in machine.log:
            runs.append(clock.now())
        await clock.advance(0.125)
    # 1/8 s after the first failure, then twice as long after each next one.
    assert runs == [0.0, 0.125, 0.375, 0.875, 1.875, 3.875]


async def test_steps_that_require_a_held_step_wait_with_it(source, machine):
    reconcile = reconciler(source, machine)
    machine.fail["network:default"] = errors.PermanentError("network in use")
    source.submit(state(web(replicas=1)))
    with pytest.raises(errors.PermanentError):
        await reconcile(P)
    machine.log.clear()
    with pytest.raises(errors.PermanentError, match="network:default create: network in use"):
        await reconcile(P)
    assert machine.log == []  # neither the network nor the container that needs it


async def test_a_failed_dependency_check_is_looked_at_again(source, machine):
    clock = clocks.FakeClock()
    reconcile = reconciler(source, machine, clock=clock)
    machine.fail["service:cache"] = errors.PermanentError("container demo-cache-1 exited (1)")
    needs = (model.Dependency("cache", model.Condition.COMPLETED),)
    source.submit(state(web(replicas=1, depends_on=needs), cache()))
    with pytest.raises(errors.TemporaryError, match="exited"):
        await reconcile(P)
    del machine.fail["service:cache"]  # the job ran again and finished well
    await clock.advance(1)
    await reconcile(P)
    assert "demo-web-1" in machine.containers


async def test_two_services_with_one_container_name_fail_for_good(source, machine):
    reconcile = reconciler(source, machine)
    source.submit(state(web(replicas=1, container_name="x"), cache(container_name="x")))
    with pytest.raises(errors.PermanentError, match='"x" is also the name'):
        await reconcile(P)
    assert machine.containers == {}
