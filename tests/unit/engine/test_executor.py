"""The plan executor: DAG order, concurrency, skipped dependants, delays on fake time."""

from __future__ import annotations

import asyncio

import pytest

from reconciler.engine import clocks, errors, executor
from reconciler.plan import plans
from reconciler.plan.plans import Action, Edge, Step


def plan(*steps: Step) -> plans.Plan:
    return plans.Plan(tuple(steps))


class Recorder:
    """Step functions that record start/end and can be held or made to fail per resource."""

    def __init__(self, fail=None):
        self.events: list[str] = []
        self.fail = fail or {}
        self.gates: dict[str, asyncio.Event] = {}
        self.running = 0
        self.peak = 0

    async def __call__(self, step: Step) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.events.append(f"start {step.resource}")
        try:
            if step.resource in self.gates:
                await self.gates[step.resource].wait()
            else:
                await asyncio.sleep(0)
            if step.resource in self.fail:
                raise self.fail[step.resource]
            self.events.append(f"end {step.resource}")
        finally:
            self.running -= 1

    def functions(self):
        return {a: self for a in Action}


async def test_steps_wait_for_their_predecessors_and_independent_ones_overlap():
    rec = Recorder()
    rec.gates["network:a"] = asyncio.Event()
    p = plan(Step(1, "network:a", Action.CREATE),
             Step(2, "volume:v", Action.CREATE),
             Step(3, "service:web:1", Action.CREATE, after=(Edge(1), Edge(2))))
    run = asyncio.ensure_future(executor.execute(p, rec.functions()))
    await clocks.settle()
    assert rec.events == ["start network:a", "start volume:v", "end volume:v"]
    rec.gates["network:a"].set()
    report = await run
    assert rec.events[-2:] == ["start service:web:1", "end service:web:1"]
    assert report.ok
    assert rec.peak == 2


async def test_a_failure_skips_required_dependants_only():
    rec = Recorder(fail={"service:db:1": RuntimeError("boom")})
    p = plan(Step(1, "service:db:1", Action.CREATE),
             Step(2, "service:db", Action.AWAIT, "healthy", (Edge(1),)),
             Step(3, "service:web:1", Action.CREATE, after=(Edge(2),)),
             Step(4, "service:cache:1", Action.CREATE, after=(Edge(1, required=False),)),
             Step(5, "service:other:1", Action.CREATE))
    report = await executor.execute(p, rec.functions())
    assert str(report) == "\n".join([
        "#1 service:db:1 create: failed (RuntimeError: boom)",
        "#2 service:db await: skipped (#1 failed)",
        "#3 service:web:1 create: skipped (#2 skipped)",
        "#4 service:cache:1 create: done",
        "#5 service:other:1 create: done",
    ])
    with pytest.raises(executor.StepsFailed, match="service:db:1 create: RuntimeError: boom"):
        report.raise_for_failures()


async def test_concurrency_is_bounded():
    rec = Recorder()
    steps = [Step(n, f"service:s:{n}", Action.CREATE) for n in range(1, 11)]
    for step in steps:
        rec.gates[step.resource] = asyncio.Event()
    run = asyncio.ensure_future(executor.execute(plan(*steps), rec.functions(), concurrency=3))
    await clocks.settle()
    assert rec.running == 3
    for gate in rec.gates.values():
        gate.set()
    assert (await run).ok
    assert rec.peak == 3


async def test_retry_policy_of_failures():
    temporary = Recorder(fail={"network:a": errors.TemporaryError("not yet", delay=3)})
    report = await executor.execute(plan(Step(1, "network:a", Action.CREATE)),
                                    temporary.functions())
    with pytest.raises(errors.TemporaryError) as caught:
        report.raise_for_failures()
    assert caught.value.delay == 3
    permanent = Recorder(fail={"network:a": errors.PermanentError("declared external")})
    report = await executor.execute(plan(Step(1, "network:a", Action.REQUIRE)),
                                    permanent.functions())
    with pytest.raises(errors.PermanentError, match="declared external"):
        report.raise_for_failures()


async def test_step_delay_uses_the_injected_clock():
    clock = clocks.FakeClock()
    rec = Recorder()
    run = asyncio.ensure_future(executor.execute(
        plan(Step(1, "service:web:1", Action.START, delay=0.75)), rec.functions(), clock=clock))
    await clock.advance(0.5)
    assert rec.events == []
    await clock.advance(0.25)
    assert (await run).ok and rec.events == ["start service:web:1", "end service:web:1"]


async def test_cancellation_propagates_and_stops_every_step():
    rec = Recorder()
    rec.gates["service:web:1"] = asyncio.Event()
    run = asyncio.ensure_future(executor.execute(
        plan(Step(1, "service:web:1", Action.CREATE)), rec.functions()))
    await clocks.settle()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert rec.running == 0


async def test_missing_step_function_is_refused_before_anything_runs():
    rec = Recorder()
    with pytest.raises(ValueError, match="no step function for remove"):
        await executor.execute(plan(Step(1, "service:web:1", Action.CREATE),
                                    Step(2, "service:old:1", Action.REMOVE)),
                               {Action.CREATE: rec})
    assert rec.events == []


async def test_listener_sees_started_and_final_status():
    seen = []
    await executor.execute(plan(Step(1, "network:a", Action.CREATE)), Recorder().functions(),
                           listener=lambda r: seen.append(r.status.value))
    assert seen == ["started", "done"]


async def test_a_plan_waiting_on_a_later_step_is_refused():
    rec = Recorder()
    with pytest.raises(ValueError, match="step #1 waits for #2, which does not come before it"):
        await executor.execute(plan(Step(1, "service:a:1", Action.CREATE, after=(Edge(2),)),
                                    Step(2, "service:b:1", Action.CREATE)), rec.functions())
    assert rec.events == []
