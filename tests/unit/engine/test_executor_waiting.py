"""executor.waiting(): a step that waits on something outside (a grace period) gives its place
to other steps meanwhile, and takes one again before it goes on."""

from __future__ import annotations

import asyncio

from reconciler.engine import clocks, executor
from reconciler.plan import plans
from reconciler.plan.plans import Action, Step


class Stops:
    """Each step acts a little, waits at a gate inside waiting(), then acts again."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.waiting = 0
        self.acting = 0
        self.peak_acting = 0

    async def _act(self) -> None:
        self.acting += 1
        self.peak_acting = max(self.peak_acting, self.acting)
        await asyncio.sleep(0)
        self.acting -= 1

    async def __call__(self, step: Step) -> None:
        await self._act()
        async with executor.waiting():
            self.waiting += 1
            await self.gate.wait()
        await self._act()


async def test_steps_that_wait_do_not_hold_the_places_of_others():
    stops = Stops()
    plan = plans.Plan(tuple(Step(n, f"service:s{n}:1", Action.REMOVE) for n in range(1, 11)))
    run = asyncio.ensure_future(executor.execute(plan, {Action.REMOVE: stops}, concurrency=2))
    await clocks.settle()
    assert stops.waiting == 10  # all wait together, not two at a time
    stops.gate.set()
    report = await run
    assert report.ok
    assert stops.peak_acting <= 2  # what they do besides waiting keeps to the limit


async def test_outside_a_step_it_does_nothing():
    async with executor.waiting():
        pass
