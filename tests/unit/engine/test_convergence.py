"""Property: whatever the machine looks like, one executed plan leaves nothing more to do."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.engine import clocks, executor
from reconciler.plan import diff, model
from tests.unit.engine import fakes

P = "demo"
NAMES = ["a", "b", "c", "d"]
STATES = list(model.ContainerState)


@st.composite
def desired_states(draw):
    count = draw(st.integers(1, len(NAMES)))
    services = []
    for i, name in enumerate(NAMES[:count]):
        deps = draw(st.lists(st.sampled_from(NAMES[:i]), unique=True)) if i else []
        services.append(model.DesiredService(
            P, name, draw(st.sampled_from(["h1", "h2"])), "busybox",
            draw(st.sampled_from(["sha256:1", "sha256:2", None])),
            replicas=draw(st.integers(0, 3)), networks=("default",),
            depends_on=tuple(model.Dependency(
                d, draw(st.sampled_from(list(model.Condition))), draw(st.booleans()),
                draw(st.booleans())) for d in deps),
            restart=model.RestartPolicy(draw(st.sampled_from(model.RestartPolicy.NAMES))),
            limits=model.Limits(pids=draw(st.sampled_from([None, 10, 20])))))
    return model.DesiredState(P, tuple(services),
                              (model.DesiredNetwork("default", f"{P}_default", "n1"),))


@st.composite
def machines(draw):
    machine = fakes.FakeMachine()
    for _ in range(draw(st.integers(0, 8))):
        service = draw(st.sampled_from(NAMES + ["gone"]))
        replica = draw(st.integers(1, 3))
        name = f"{P}-{service}-{replica}" + draw(st.sampled_from(["", "-old"]))
        machine.containers[name] = model.ObservedContainer(
            name, P, service, replica, draw(st.sampled_from(["h1", "h2"])),
            draw(st.sampled_from(["sha256:1", "sha256:2"])), draw(st.sampled_from(STATES)),
            exit_code=draw(st.sampled_from([0, 1])),
            limits=model.Limits(pids=draw(st.sampled_from([None, 10]))))
    if draw(st.booleans()):
        machine.networks[f"{P}_default"] = model.ObservedNetwork(
            f"{P}_default", P, "default", draw(st.sampled_from(["n1", "n0"])))
    return machine


async def converge(desired, machine, options) -> str:
    plan = diff.diff(desired, await machine.observe(P), options)
    report = await executor.execute(plan, machine.functions(P), clock=clocks.FakeClock(0),
                                    concurrency=4) if plan else None
    assert report is None or report.ok, str(report)
    return str(diff.diff(desired, await machine.observe(P), options))


@settings(max_examples=150, deadline=None)
@given(desired_states(), machines(), st.booleans(), st.booleans())
def test_one_plan_converges(desired, machine, start_stopped, remove_orphans):
    options = model.DiffOptions(start_stopped=start_stopped, remove_orphans=remove_orphans)
    # Restart delays would wait on the fake clock: run those with start_stopped, which has none.
    options_now = model.DiffOptions(start_stopped=True, remove_orphans=remove_orphans)
    leftover = asyncio.run(converge(desired, machine, options_now))
    assert all(line.startswith("warning:") for line in leftover.splitlines()), leftover
    again = str(diff.diff(desired, asyncio.run(machine.observe(P)), options))
    assert all(line.startswith("warning:") for line in again.splitlines()), again
    for service in desired.services:
        running = [c for c in machine.containers.values() if c.service == service.name]
        assert sorted(c.replica for c in running) == list(range(1, service.replicas + 1))
