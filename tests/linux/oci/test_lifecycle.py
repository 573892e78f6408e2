"""A container's life under conmon: exit codes and output, stop and kill, pause, survival, removal."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime.cgroups import drivers
from runtime.oci import conmon, lifecycle, observe, runc
from tests.linux.oci import helpers
from tests.support import cgroupfs, waiting


async def test_exit_code_stdout_and_stderr_reach_the_caller(lay, make):
    config = make(command=("sh", "-c", "echo to-out; echo to-err >&2; exit 7"))
    status = await helpers.run_to_exit(lay, config)
    assert status.code == 7
    assert not status.oom_killed
    assert status.started_at is not None and status.started_at <= status.finished_at
    assert helpers.output(lay, config.name, "stdout") == "to-out"
    assert helpers.output(lay, config.name, "stderr") == "to-err"


async def test_stop_sends_sigkill_after_the_grace_period(lay, make):
    # busybox sleep as PID 1 ignores SIGTERM: only the SIGKILL after the grace period ends it.
    config = make(command=("sleep", "1000"), stop_grace_period=0.3)
    await lifecycle.run(lay, config)
    status = await lifecycle.stop(lay, config.name)
    assert status.code == 137
    assert (await observe.get(lay, config.name)).status == "exited"


async def test_stop_signal_is_sent_first(lay, make):
    script = "trap 'echo got-usr1; exit 42' USR1; echo ready; while :; do sleep 0.05; done"
    config = make(command=("sh", "-c", script), stop_signal="SIGUSR1", stop_grace_period=20)
    await lifecycle.run(lay, config)
    await _wait_for_output(lay, config.name, "ready")
    status = await lifecycle.stop(lay, config.name)
    assert status.code == 42
    assert "got-usr1" in helpers.output(lay, config.name)


async def test_kill_delivers_the_signal(lay, make):
    config = make(command=("sleep", "1000"))
    await lifecycle.run(lay, config)
    await lifecycle.kill(lay, config.name, "KILL")
    status = await lifecycle.wait(lay, config.name, timeout=10)
    assert status.code == 137


async def test_pause_freezes_and_unpause_thaws(lay, make):
    config = make(command=("sleep", "1000"))
    await lifecycle.run(lay, config)
    await lifecycle.pause(lay, config.name)
    observed = await observe.get(lay, config.name)
    assert observed.status == "paused"
    assert drivers.detect().frozen(observed.cgroups_path)
    await lifecycle.unpause(lay, config.name)
    assert (await observe.get(lay, config.name)).status == "running"
    assert not drivers.detect().frozen(observed.cgroups_path)
    # A paused container still stops: stop thaws before signalling.
    await lifecycle.pause(lay, config.name)
    status = await lifecycle.stop(lay, config.name, timeout=0.2)
    assert status.code == 137


async def test_container_outlives_the_process_that_started_it(lay, make, state_root):
    config = make(command=("sleep", "1000"))
    launcher = state_root / "launcher.py"
    launcher.write_text(textwrap.dedent("""
        import asyncio, pickle, sys, time
        from runtime.oci import lifecycle
        lay, config = pickle.loads(bytes.fromhex(sys.argv[1]))
        print("PID", asyncio.run(lifecycle.run(lay, config)), flush=True)
        time.sleep(1000)
    """))
    proc = subprocess.Popen(
        [sys.executable, str(launcher), pickle.dumps((lay, config)).hex()],
        stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[3])),
    )
    try:
        line = proc.stdout.readline()
        while line and not line.startswith("PID "):
            line = proc.stdout.readline()
        pid = int(line.split()[1])
    finally:
        proc.kill()  # by PID: the launcher we started
        proc.wait()
    # A fresh look from another process finds the container, still running, with its identity.
    [found] = await observe.list_containers(lay, project=config.identity.project)
    assert (found.id, found.status, found.pid) == (config.name, "running", pid)
    assert (found.service, found.replica, found.config_hash) == ("app", 1, "h1")
    assert Path(f"/proc/{pid}").exists()


async def test_create_is_idempotent_and_refuses_another_config(lay, make):
    config = make(command=("sleep", "1000"))
    pid = await lifecycle.create(lay, config)
    assert await lifecycle.create(lay, config) == pid
    other = make(command=("sleep", "1000"), identity=config.identity.__class__(project=config.identity.project, service="app", config_hash="h2"))
    with pytest.raises(lifecycle.ContainerExists):
        await lifecycle.create(lay, other)
    await lifecycle.start(lay, config.name)
    await lifecycle.start(lay, config.name)  # already running: nothing to do
    assert (await observe.get(lay, config.name)).status == "running"


async def test_remove_leaves_nothing_behind(lay, make):
    config = make(command=("sleep", "1000"))
    await lifecycle.run(lay, config)
    cgroup = (await observe.get(lay, config.name)).cgroups_path
    conmon_pid = int((lay.container_dir(config.name) / "conmon.pid").read_text())
    await lifecycle.remove(lay, config.name)
    await lifecycle.remove(lay, config.name)  # removing what is gone succeeds
    assert await runc.state(lay.runc, config.name) is None
    assert not lay.container_dir(config.name).exists()
    assert not lay.exit_file(config.name).exists()
    assert [d for d in cgroupfs.dirs(cgroup) if d.exists()] == []
    assert not lifecycle.process_alive(conmon_pid)  # gone, or a zombie left for PID 1 to reap


async def test_a_bad_command_fails_create_with_runc_reason(lay, make):
    config = make(command=("/no/such/binary",))
    with pytest.raises(conmon.ConmonError) as caught:
        await lifecycle.run(lay, config)
    assert "no such file" in str(caught.value).lower() or "not found" in str(caught.value).lower()


async def _wait_for_output(lay, cid: str, text: str, timeout: float = 10.0) -> None:
    await waiting.until(lambda: text in helpers.output(lay, cid), timeout=timeout,
                        what=f"{cid} to print {text!r}")


async def test_a_paused_container_is_removed_completely(lay, make):
    # Frozen tasks ignore SIGKILL until thawed: removal must still end them.
    config = make(command=("sleep", "1000"))
    pid = await lifecycle.run(lay, config)
    await lifecycle.pause(lay, config.name)
    await lifecycle.remove(lay, config.name)
    assert await runc.state(lay.runc, config.name) is None
    assert not lifecycle.process_alive(pid)


async def test_an_exited_container_starts_again_and_keeps_its_log(lay, make):
    config = make(command=("sh", "-c", "echo ran; exit 1"))
    first = await helpers.run_to_exit(lay, config)
    await lifecycle.start(lay, config.name)
    second = await lifecycle.wait(lay, config.name, timeout=10)
    assert (first.code, second.code) == (1, 1)
    assert second.started_at > first.started_at
    assert helpers.output(lay, config.name) == "ran\nran"
