"""The worker loop: retries per key with backoff, temporary and permanent errors, on fake time."""

from __future__ import annotations

import asyncio

import pytest
import structlog
import structlog.testing

from reconciler.engine import backoff, clocks, controller, errors, workqueue


def make(reconcile, clock):
    return controller.Controller(
        "test", reconcile, queue=workqueue.WorkQueue(clock),
        backoff=backoff.Backoff(base=1.0, cap=8.0, jitter=0.0), workers=2)


async def run_in_background(ctrl):
    task = asyncio.ensure_future(ctrl.run())
    await clocks.settle()
    return task


async def stop(ctrl, task):
    ctrl.queue.shut_down()
    await asyncio.wait_for(task, 1)


async def test_plain_failures_back_off_exponentially_then_recover():
    clock = clocks.FakeClock()
    calls: list[float] = []

    async def reconcile(key):
        calls.append(clock.now())
        if len(calls) < 4:
            raise RuntimeError("daemon not ready")
        return None

    ctrl = make(reconcile, clock)
    task = await run_in_background(ctrl)
    ctrl.queue.add("p")
    for _ in range(10):
        await clock.advance(1)
    assert calls == [0, 1, 3, 7]
    assert ctrl.status["p"] == controller.KeyStatus("ok")
    assert ctrl.backoff.failures("p") == 0
    await stop(ctrl, task)


async def test_temporary_error_retries_after_its_delay_and_permanent_stops():
    clock = clocks.FakeClock()
    calls: list[tuple[str, float]] = []

    async def reconcile(key):
        calls.append((key, clock.now()))
        if key == "waiting":
            raise errors.TemporaryError("image still pulling", delay=5)
        raise errors.PermanentError("network shared declared as external, but not found")

    ctrl = make(reconcile, clock)
    task = await run_in_background(ctrl)
    ctrl.queue.add("waiting")
    ctrl.queue.add("broken")
    await clock.advance(12)
    assert [t for k, t in calls if k == "waiting"] == [0, 5, 10]
    assert [t for k, t in calls if k == "broken"] == [0]
    assert ctrl.status["broken"].state == "failed"
    assert "declared as external" in ctrl.status["broken"].reason
    assert ctrl.status["waiting"].state == "retrying"
    await stop(ctrl, task)


async def test_requeue_after_from_a_successful_reconcile():
    clock = clocks.FakeClock()
    calls = []

    async def reconcile(key):
        calls.append(clock.now())
        return 30.0

    ctrl = make(reconcile, clock)
    task = await run_in_background(ctrl)
    ctrl.queue.add("p")
    await clock.advance(61)
    assert calls == [0, 30, 60]
    await stop(ctrl, task)


async def test_one_key_is_never_reconciled_twice_at_once():
    clock = clocks.FakeClock()
    active, peak, gate = set(), [0], asyncio.Event()

    async def reconcile(key):
        assert key not in active
        active.add(key)
        peak[0] = max(peak[0], len(active))
        await gate.wait()
        active.discard(key)

    ctrl = make(reconcile, clock)
    task = await run_in_background(ctrl)
    for key in ["a", "a", "b", "a"]:
        ctrl.queue.add(key)
        await clocks.settle()
    assert active == {"a", "b"}
    gate.set()
    await clocks.settle()
    assert not active and peak[0] == 2
    await stop(ctrl, task)


async def test_cancellation_is_not_swallowed():
    started = asyncio.Event()

    async def reconcile(key):
        started.set()
        await asyncio.Event().wait()

    ctrl = make(reconcile, clocks.FakeClock())
    task = await run_in_background(ctrl)
    ctrl.queue.add("p")
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "p" not in ctrl.status


async def test_events_logged_during_a_reconcile_carry_its_id():
    async def reconcile(key):
        structlog.get_logger("test").info("container.created")
        raise RuntimeError("boom")

    ctrl = make(reconcile, clocks.FakeClock())
    with structlog.testing.capture_logs(
            processors=[structlog.contextvars.merge_contextvars]) as logged:
        await ctrl.process("shop")
        await ctrl.process("shop")
    assert [(e["event"], e["key"], e["reconcile_id"]) for e in logged] == [
        ("container.created", "shop", 1), ("reconcile.failed", "shop", 1),
        ("container.created", "shop", 2), ("reconcile.failed", "shop", 2)]


async def test_a_key_failing_the_same_way_is_logged_once():
    clock = clocks.FakeClock()

    async def reconcile(key):
        raise errors.PermanentError("secret s: file ./s is a directory", requeue_after=30)

    ctrl = make(reconcile, clock)
    task = await run_in_background(ctrl)
    with structlog.testing.capture_logs() as logs:
        ctrl.queue.add("p")
        await clock.advance(95)  # looked at again after 30, 60 and 90 s
    failed = [e for e in logs if e["event"] == "reconcile.failed"]
    assert [e["log_level"] for e in failed] == ["warning", "debug", "debug", "debug"]
    assert ctrl.status["p"].state == "failed"
    await stop(ctrl, task)
