"""Coalesced refreshes: concurrent steps share rebuilds, and each step's change is in the
rebuild it waited for."""

import asyncio

from reconciler.engine import coalesce


async def test_fifty_concurrent_requests_cost_two_runs_and_each_is_covered():
    changes: list[int] = []
    read_by_run: list[int] = []

    async def rebuild():
        read_by_run.append(len(changes))
        await asyncio.sleep(0.01)

    refresh = coalesce.Coalesced(rebuild)

    async def step(i: int) -> bool:
        changes.append(i)
        mine = len(changes)
        await refresh()
        return max(read_by_run) >= mine

    covered = await asyncio.gather(*(step(i) for i in range(50)))

    assert all(covered)
    assert refresh.runs == 2
    assert read_by_run == [1, 50]


async def test_a_failed_rebuild_is_run_again_by_the_next_waiter():
    attempts = []

    async def flaky():
        attempts.append(len(attempts))
        if len(attempts) == 1:
            raise OSError("dns socket busy")

    refresh = coalesce.Coalesced(flaky)
    results = await asyncio.gather(refresh(), refresh(), return_exceptions=True)

    assert isinstance(results[0], OSError) and results[1] is None
    assert attempts == [0, 1]


async def test_a_later_request_is_not_served_by_an_earlier_run():
    runs = []

    async def rebuild():
        runs.append("run")

    refresh = coalesce.Coalesced(rebuild)
    await refresh()
    await refresh()
    assert runs == ["run", "run"]
