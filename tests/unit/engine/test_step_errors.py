"""Errors in steps: only PermanentError gives up on a resource; anything else is retried with
backoff, and said in the log once, with its traceback when it is not the engine's own."""

from __future__ import annotations

import structlog

from reconciler.engine import backoff, clocks, controller, errors, loop
from reconciler.plan import model
from tests.unit.engine import fakes

P = "demo"


def _state() -> model.DesiredState:
    web = model.DesiredService(P, "web", "h1", "busybox", "sha256:a", networks=("default",))
    return model.DesiredState(P, (web,), (model.DesiredNetwork("default", f"{P}_default"),))


def _controller(machine: fakes.FakeMachine, clock: clocks.FakeClock):
    source = fakes.FakeSource()
    source.submit(_state())
    reconcile = loop.ProjectReconciler(source, machine, machine, resync=30.0, clock=clock)
    reconcile.failures.backoff = backoff.Backoff(base=0.125, jitter=0.0)
    return controller.Controller("projects", reconcile), reconcile


def _failed_steps(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e["event"] == "step.failed" and e["log_level"] == "warning"]


async def test_an_unexpected_error_is_retried_and_logged_once_with_its_traceback():
    machine, clock = fakes.FakeMachine(P), clocks.FakeClock()
    ctrl, _ = _controller(machine, clock)
    machine.fail["service:web:1"] = OSError(16, "Device or resource busy")
    with structlog.testing.capture_logs() as logs:
        for _ in range(12):  # passes on every exit and resync, 3 s of them
            status = await ctrl.process(P)
            assert status.state == "retrying", status  # never given up on
            await clock.advance(0.25)
    assert machine.log.count("service:web:1 create") > 2  # tried again, later each time
    [told] = _failed_steps(logs)
    assert told["resource"] == "service:web:1" and told["action"] == "create"
    assert isinstance(told["exc_info"], OSError)
    del machine.fail["service:web:1"]
    await clock.advance(5.0)
    assert (await ctrl.process(P)).state == "ok"
    assert "demo-web-1" in machine.containers


async def test_the_engines_own_errors_are_logged_without_a_traceback():
    machine, clock = fakes.FakeMachine(P), clocks.FakeClock()
    ctrl, _ = _controller(machine, clock)
    machine.fail["service:web:1"] = errors.TemporaryError("registry unreachable", 0.5)
    with structlog.testing.capture_logs() as logs:
        await ctrl.process(P)
    [told] = _failed_steps(logs)
    assert told["exc_info"] is None and told["error"] == "registry unreachable"


async def test_only_a_permanent_error_marks_the_resource_failed():
    machine, clock = fakes.FakeMachine(P), clocks.FakeClock()
    ctrl, reconcile = _controller(machine, clock)
    machine.fail["service:web:1"] = errors.PermanentError("secret s: no such file")
    status = await ctrl.process(P)
    assert status.state == "failed" and "secret s" in status.reason
    [failure] = reconcile.failures.failures(P)
    assert failure.final
