"""A real background agent: started when none answers, reached over its socket, stopped by PID."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from prometheus_client import parser

from reconciler.agent import api, client, launcher
from tests.support import waiting


@pytest.fixture
def started(state_root: Path, run_dir: Path):
    """Every agent process a test starts; each is killed by PID and reaped at the end."""
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(10)


async def subscribers(agent: client.AgentClient) -> float | None:
    """Open event streams, as a Prometheus scraper reads the agent's /metrics."""
    for family in parser.text_string_to_metric_families(await agent.metrics()):
        for sample in family.samples:
            if sample.name == "pcompose_event_subscribers":
                return sample.value
    return None


STACK = {"services": {"web": {
        # Nothing leaves the machine: no pull, no network (the agent reconciles for real).
        "image": "busybox", "pull_policy": "never", "network_mode": "none"}}}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_cli_starts_an_agent_in_the_background_once(state_root, run_dir, started):
    first = await launcher.ensure_agent(state_root, run_dir)
    assert first is not None
    started.append(first)
    assert await launcher.ensure_agent(state_root, run_dir) is None  # it answers: reused
    async with client.AgentClient(run_dir) as agent:
        version = await agent.version()
    assert version.pid == first.pid and version.root == str(state_root)
    assert (run_dir / api.SOCKET_NAME).stat().st_mode & 0o777 == 0o600
    # Its own session: a Ctrl-C to the CLI's process group does not reach it.
    assert os.getsid(first.pid) == first.pid


async def test_two_callers_racing_end_with_one_agent(state_root, run_dir, started):
    results = await asyncio.gather(launcher.ensure_agent(state_root, run_dir),
                                   launcher.ensure_agent(state_root, run_dir))
    started.extend(r for r in results if r is not None)
    async with client.AgentClient(run_dir) as agent:
        pid = (await agent.version()).pid
    running = [p for p in started if p.poll() is None]
    assert [p.pid for p in running] == [pid]


async def test_desired_state_survives_kill_9_of_the_agent(state_root, run_dir, started):
    started.append(await launcher.ensure_agent(state_root, run_dir))
    async with client.AgentClient(run_dir) as agent:
        await agent.put_project("shop", STACK,
                                config_files=["/srv/shop/compose.yaml"], working_dir="/srv/shop")
    os.kill(started[0].pid, signal.SIGKILL)
    started[0].wait(10)
    again = await launcher.ensure_agent(state_root, run_dir)
    started.append(again)
    assert again.pid != started[0].pid
    async with client.AgentClient(run_dir) as agent:
        (project,) = await agent.projects()
        _, stack = await agent.project("shop")
    assert (project.name, project.generation, project.config_files) == \
        ("shop", 1, ("/srv/shop/compose.yaml",))
    assert stack == STACK


async def test_sigterm_stops_it_cleanly_and_it_logged_json(state_root, run_dir, started):
    process = await launcher.ensure_agent(state_root, run_dir)
    started.append(process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
    assert not (run_dir / api.SOCKET_NAME).exists()
    assert not alive(process.pid)
    lines = [json.loads(line) for line in launcher.log_path(state_root).read_text().splitlines()]
    assert [e["event"] for e in lines if e["event"].startswith("agent.")] == \
        ["agent.started", "agent.stopped"]
    began = next(e for e in lines if e["event"] == "agent.started")
    assert began["level"] == "info" and "timestamp" in began


async def test_an_agent_that_cannot_start_is_reported_with_its_log(state_root, run_dir, started):
    bad_run_dir = run_dir / "taken"
    bad_run_dir.write_text("a file where the run dir should be")
    with pytest.raises(client.AgentUnavailable, match="exited with code 1;.*cannot start the agent: .*File exists"):
        await launcher.ensure_agent(state_root, bad_run_dir)
    with pytest.raises(client.AgentUnavailable, match="cannot start the agent"):
        await launcher.ensure_agent(bad_run_dir, run_dir)


async def test_events_stream_over_the_socket(state_root, run_dir, started):
    started.append(await launcher.ensure_agent(state_root, run_dir))
    async with client.AgentClient(run_dir) as agent:
        stream = agent.events()
        first = asyncio.ensure_future(stream.__anext__())

        async def subscribed() -> bool:
            return await subscribers(agent) == 1

        await waiting.until(subscribed, what="the stream's subscription")
        await agent.put_project("shop", {"services": {}})
        event = await asyncio.wait_for(first, 5)
        await stream.aclose()
    assert (event.type, event.project, event.status) == ("project", "shop", "submitted")
