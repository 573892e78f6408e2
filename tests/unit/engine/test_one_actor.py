"""One actor per project: a pass and a user's verb take turns on the project's lock, and a
step that waits for a dependency ends the pass instead of holding the lock."""

from __future__ import annotations

import asyncio

from reconciler.engine import errors, executor, keylocks, loop
from reconciler.plan import model, plans
from tests.unit.engine import fakes

P = "demo"


def _state(*services: model.DesiredService) -> model.DesiredState:
    return model.DesiredState(P, services, (model.DesiredNetwork("default", f"{P}_default"),))


def _service(name: str, **kw) -> model.DesiredService:
    return model.DesiredService(P, name, "h1", "busybox", "sha256:a", networks=("default",),
                                **kw)


class GatedMachine(fakes.FakeMachine):
    """Its look at the project waits until `gate` opens, and says that it began."""

    def __init__(self) -> None:
        super().__init__(P)
        self.gate = asyncio.Event()
        self.looking = asyncio.Event()

    async def observe(self, project: str) -> model.ObservedState:
        self.looking.set()
        await self.gate.wait()
        self.log.append("observed")
        return await super().observe(project)


async def test_a_verb_waits_for_the_pass_that_looked_before_it():
    source, machine, locks = fakes.FakeSource(), GatedMachine(), keylocks.KeyLocks()
    source.submit(_state(_service("web")))
    reconcile = loop.ProjectReconciler(source, machine, machine, resync=30.0, locks=locks)
    passing = asyncio.ensure_future(reconcile(P))
    await machine.looking.wait()

    async def verb() -> None:
        async with locks.hold(P):
            machine.log.append("verb")

    acting = asyncio.ensure_future(verb())
    await asyncio.sleep(0)
    assert locks.held(P) and not acting.done()
    machine.gate.set()
    await asyncio.gather(passing, acting)
    # The pass's steps all ran before the verb looked at anything.
    assert machine.log[0] == "observed" and machine.log[-1] == "verb"
    assert "service:web:1 create" in machine.log
    assert not locks.held(P)  # nothing kept for a project nobody acts on


async def test_a_pass_waits_for_a_verb_in_progress():
    source, machine, locks = fakes.FakeSource(), fakes.FakeMachine(P), keylocks.KeyLocks()
    source.submit(_state(_service("web")))
    reconcile = loop.ProjectReconciler(source, machine, machine, resync=30.0, locks=locks)
    async with locks.hold(P):
        passing = asyncio.ensure_future(reconcile(P))
        for _ in range(5):
            await asyncio.sleep(0)
        assert machine.log == [] and not passing.done()
    await passing
    assert machine.log[0] == "network:default create"


class DependencyMachine(fakes.FakeMachine):
    """The dependency's await step is not ready until `ready` is set."""

    def __init__(self) -> None:
        super().__init__(P)
        self.ready = False

    async def _step(self, step: plans.Step) -> None:
        if step.action is plans.Action.AWAIT and not self.ready:
            self.log.append(f"{step.resource} await (not ready)")
            raise errors.NotReady("waiting for db to be healthy", 0.2)
        await super()._step(step)


async def test_a_dependency_not_ready_ends_the_pass_and_comes_back_soon():
    source, machine, locks = fakes.FakeSource(), DependencyMachine(), keylocks.KeyLocks()
    healthy = model.Dependency("db", model.Condition.HEALTHY)
    source.submit(_state(_service("db"), _service("web", depends_on=(healthy,))))
    told: list[str] = []
    reconcile = loop.ProjectReconciler(
        source, machine, machine, resync=30.0, locks=locks,
        listener=lambda project, r: told.append(f"{r.step.resource} {r.step.action.value} "
                                                f"{r.status.value}"))
    # Twice not ready: each pass ends at once, asking to be looked at again soon, with the
    # key free meanwhile; the dependent is not made, the generation not applied.
    for _ in range(2):
        assert await reconcile(P) == 0.2
        assert not locks.held(P)
    assert "service:web:1 create" not in machine.log
    assert await source.applied_generation(P) == 0
    # Told once that it waits, not once per pass.
    assert told.count("service:db await started") == 1
    assert told.count("service:db await waiting") == 1
    assert told.count("service:web:1 create skipped") == 2
    machine.ready = True
    await reconcile(P)
    assert "service:web:1 create" in machine.log
    assert "service:db await done" in told
    assert await source.applied_generation(P) == 1


async def test_not_ready_is_neither_a_failure_nor_a_skip():
    step = plans.Step(1, "service:db", plans.Action.AWAIT, "healthy")

    async def not_yet(step: plans.Step) -> None:
        raise errors.NotReady("waiting", 0.3)

    report = await executor.execute(plans.Plan((step,)), {plans.Action.AWAIT: not_yet})
    assert [r.status for r in report.results] == [executor.Status.WAITING]
    assert report.results[0].retry_in == 0.3
    assert not report.failed and not report.ok
