"""A task the agent runs for its whole life (resync, exit watch, DNS and health checks) that
dies takes the agent down loudly: logged with its traceback, and a non-zero exit."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from reconciler import cli
from reconciler.agent import daemon
from tests.support import waiting
from tests.unit.agent import test_api
from tests.unit.engine import fakes


@pytest.fixture
def dirs():
    base = Path(tempfile.mkdtemp(prefix="pca", dir="/tmp"))  # a socket path fits in 108 bytes
    yield base / "root", base / "run"
    shutil.rmtree(base, ignore_errors=True)


def dying_runtime(started: list[str]) -> daemon.Runtime:
    async def background(enqueue) -> None:
        started.append("background")
        await asyncio.sleep(0)
        raise RuntimeError("the health checker lost its way")

    machine = fakes.FakeMachine("shop")
    return daemon.Runtime(test_api.FakeTranslator(), machine, machine, background=background)


async def test_a_background_task_that_dies_stops_the_agent_with_task_failed(dirs):
    started: list[str] = []
    root, run_dir = dirs
    with pytest.raises(daemon.TaskFailed, match="the health checker lost its way"):
        # No stop is ever set: only the dead task can end this run.
        await asyncio.wait_for(daemon.run(root, run_dir, runtime=dying_runtime(started),
                                          resync=3600, stop=asyncio.Event()), 30)
    assert started == ["background"]
    assert not (run_dir / "agent.sock").exists()  # it stopped as at a SIGTERM


def test_the_agent_command_exits_non_zero_with_the_traceback_in_its_log(dirs, monkeypatch,
                                                                        capsys):
    root, run_dir = dirs
    monkeypatch.setattr(daemon, "default_runtime", lambda *a: dying_runtime([]))
    code = cli.main(["--root", str(root), "--run-dir", str(run_dir), "agent",
                     "--log-format", "json", "--resync", "3600"])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.splitlines() == [
        "pcompose: error: the agent stopped: "
        "dying_runtime.<locals>.background failed: RuntimeError: the health checker lost its way"]
    failed = [e for e in map(json.loads, out.splitlines()) if e["event"] == "agent.task_failed"]
    assert len(failed) == 1
    frames = failed[0]["exception"][0]["frames"]
    assert failed[0]["exception"][0]["exc_type"] == "RuntimeError"
    assert frames[-1]["name"] == "background"


@pytest.mark.root
async def test_the_agent_tightens_a_root_and_run_dir_made_open_before_it(dirs):
    root, run_dir = dirs
    for path in dirs:
        path.mkdir(mode=0o755)
        os.chmod(path, 0o755)
    stop = asyncio.Event()
    task = asyncio.ensure_future(daemon.run(root, run_dir, stop=stop))
    try:
        await waiting.until(lambda: (run_dir / "agent.sock").exists() or task.done(),
                            timeout=10, what="the agent's socket")
        assert [p.stat().st_mode & 0o777 for p in dirs] == [0o700, 0o700]
        assert sorted(p.name for p in root.iterdir()) == [
            "desired.db", "desired.db-shm", "desired.db-wal", "desired.db.bak"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
