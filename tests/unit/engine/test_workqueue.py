"""The work queue: dedup, one key in flight, delayed adds on fake time."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.engine import clocks, workqueue


async def test_duplicates_collapse_and_order_is_kept():
    queue = workqueue.WorkQueue(clocks.FakeClock())
    for key in ["a", "b", "a", "c", "b"]:
        queue.add(key)
    assert len(queue) == 3
    assert [await queue.get() for _ in range(3)] == ["a", "b", "c"]


async def test_a_key_in_flight_is_not_handed_out_twice_but_runs_again_after_done():
    queue = workqueue.WorkQueue(clocks.FakeClock())
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0
    second = asyncio.ensure_future(queue.get())
    await clocks.settle()
    assert not second.done()
    queue.done("a")
    assert await asyncio.wait_for(second, 1) == "a"


async def test_delayed_add_waits_for_the_clock():
    clock = clocks.FakeClock()
    queue = workqueue.WorkQueue(clock)
    queue.add_after("late", 5)
    queue.add_after("late", 9)  # a later add of a pending key does not postpone it
    waiter = asyncio.ensure_future(queue.get())
    await clock.advance(4.9)
    assert not waiter.done()
    await clock.advance(0.1)
    assert await asyncio.wait_for(waiter, 1) == "late"
    queue.done("late")
    await clock.advance(10)
    assert len(queue) == 0


async def test_an_earlier_delayed_add_wins():
    clock = clocks.FakeClock()
    queue = workqueue.WorkQueue(clock)
    queue.add_after("k", 10)
    queue.add_after("k", 1)
    waiter = asyncio.ensure_future(queue.get())
    await clock.advance(1)
    assert waiter.done()


async def test_shut_down_wakes_waiting_workers():
    queue = workqueue.WorkQueue(clocks.FakeClock())
    waiter = asyncio.ensure_future(queue.get())
    await clocks.settle()
    queue.shut_down()
    with pytest.raises(workqueue.ShutDown):
        await asyncio.wait_for(waiter, 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "get", "done"]), st.sampled_from("abc")),
                max_size=40))
def test_random_use_never_hands_out_a_key_twice_and_loses_none(operations):
    async def run():
        queue = workqueue.WorkQueue(clocks.FakeClock())
        in_flight: set[str] = set()
        added: set[str] = set()
        for op, key in operations:
            if op == "add":
                queue.add(key)
                added.add(key)
            elif op == "get" and len(queue):
                got = await queue.get()
                assert got not in in_flight
                in_flight.add(got)
                added.discard(got)
            elif op == "done" and key in in_flight:
                in_flight.discard(key)
                queue.done(key)
        for key in list(in_flight):
            queue.done(key)
        drained = set()
        while len(queue):
            key = await queue.get()
            drained.add(key)
            queue.done(key)
        assert drained == added  # each key added since it was last handed out, once
    asyncio.run(run())
