"""A container that is removed is first stopped as docker stops it (stop signal, grace period,
then SIGKILL), unless its stop signal is SIGKILL."""

from __future__ import annotations

from runtime.oci import lifecycle, observe
from tests.linux.oci import helpers
from tests.support import waiting

TRAPS_TERM = "trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.05; done"


async def _ready(lay, cid: str) -> None:
    await waiting.until(lambda: "ready" in helpers.output(lay, cid), what=f"{cid} to say ready")


async def test_stop_before_removal_lets_the_process_end_cleanly(lay, make):
    config = make(command=("sh", "-c", TRAPS_TERM), stop_grace_period=20)
    await lifecycle.run(lay, config)
    await _ready(lay, config.name)
    await lifecycle.stop_before_removal(lay, config.name)
    assert lifecycle.exit_status(lay, config.name).code == 0
    assert "got-term" in helpers.output(lay, config.name)
    await lifecycle.remove(lay, config.name)
    assert await observe.get(lay, config.name) is None


async def test_the_timeout_overrides_the_grace_period(lay, make):
    # busybox sleep as PID 1 ignores SIGTERM: the SIGKILL after the timeout ends it.
    config = make(command=("sleep", "1000"), stop_grace_period=600)
    await lifecycle.run(lay, config)
    await lifecycle.remove(lay, config.name, stop=True, timeout=0.2)
    assert await observe.get(lay, config.name) is None


async def test_a_sigkill_stop_signal_is_left_to_the_removal(lay, make):
    config = make(command=("sh", "-c", TRAPS_TERM), stop_signal="SIGKILL", stop_grace_period=20)
    await lifecycle.run(lay, config)
    await _ready(lay, config.name)
    await lifecycle.stop_before_removal(lay, config.name)
    # Not signalled, not waited for: `remove` kills it at once.
    assert (await observe.get(lay, config.name)).status == "running"
    await lifecycle.remove(lay, config.name, stop=True)
    assert await observe.get(lay, config.name) is None


async def test_an_exited_or_created_container_needs_no_stop(lay, make):
    done = make(service="done", command=("true",))
    await helpers.run_to_exit(lay, done)
    await lifecycle.stop_before_removal(lay, done.name)  # nothing to wait for
    created = make(service="made", command=("sleep", "1000"), stop_grace_period=600)
    await lifecycle.create(lay, created)
    await lifecycle.stop_before_removal(lay, created.name)
    assert (await observe.get(lay, created.name)).status == "created"
