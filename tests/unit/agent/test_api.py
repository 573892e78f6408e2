"""The agent in-process on a real unix socket, reconciling a FakeMachine: the API a CLI uses."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import aiohttp
import prometheus_client
import pytest
from prometheus_client import parser

from reconciler.agent import api, client, daemon, store
from reconciler.engine import errors
from reconciler.plan import model
from tests.support import waiting
from tests.unit.engine import fakes


class FakeTranslator:
    """Reads a tiny stack ({"services": {"web": {"replicas": 2}}}) instead of the spec's."""

    def desired(self, record: store.ProjectRecord) -> model.DesiredState:
        stack = json.loads(record.stack)
        services = tuple(
            model.DesiredService(record.name, name, json.dumps(body, sort_keys=True),
                                 "busybox", networks=("default",),
                                 replicas=body.get("replicas", 1),
                                 restart=model.RestartPolicy.parse(body.get("restart", "no")))
            for name, body in sorted(stack.get("services", {}).items()))
        return model.DesiredState(record.name, services,
                                  (model.DesiredNetwork("default", f"{record.name}_default"),))


@pytest.fixture
def dirs():
    # Short paths: a unix socket path has to fit in 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="pca", dir="/tmp"))
    yield base / "root", base / "run"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def machine():
    machine = fakes.FakeMachine("shop")
    return machine


@pytest.fixture
async def agent(dirs, machine):
    root, run_dir = dirs
    stop = asyncio.Event()
    runtime = daemon.Runtime(FakeTranslator(), machine, machine)
    task = asyncio.ensure_future(daemon.run(root, run_dir, runtime=runtime, stop=stop))
    async with client.AgentClient(run_dir, timeout=5) as agent_client:

        async def answers() -> bool:
            return task.done() or await agent_client.ping()

        await waiting.until(answers, timeout=10, what="the agent's socket")
        yield agent_client
    stop.set()
    await asyncio.wait_for(task, 10)


async def until(predicate, timeout=5.0):
    await waiting.until(predicate, timeout=timeout, interval=0.02)


async def test_version_and_a_root_only_socket(agent, dirs):
    version = await agent.version()
    assert version.pid == os.getpid() and version.reconciling and version.api == "v1"
    mode = (dirs[1] / api.SOCKET_NAME).stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


async def test_bad_requests_say_why_and_store_nothing(agent):
    with pytest.raises(client.ApiError, match='invalid project name "Shop"') as caught:
        await agent.put_project("Shop", {"services": {}})
    assert caught.value.status == 400
    with pytest.raises(client.ApiError, match="options.scale"):
        await agent.put_project("shop", {"services": {}}, options={"scale": {"web": "x"}})
    with pytest.raises(client.ApiError, match="no such project"):
        await agent.delete_project("shop")
    assert await agent.projects() == []


async def test_submit_converges_and_streams_step_events(agent, machine):
    seen = []

    async def follow():
        async for event in agent.events(project="shop"):
            seen.append(event)
            if event.type == "step" and event.status == "done" and \
                    event.resource == "service:web:2":
                return

    follower = asyncio.ensure_future(follow())
    await until(lambda: _sample_is(agent, ("pcompose_event_subscribers", ()), 1))
    info = await agent.put_project("shop", {"services": {"web": {"replicas": 2}}},
                                   config_files=["/srv/shop/compose.yaml"],
                                   working_dir="/srv/shop")
    assert info.generation == 1
    await asyncio.wait_for(follower, 5)
    assert seen[0].type == "project" and seen[0].status == "submitted"
    assert sorted(machine.containers) == ["shop-web-1", "shop-web-2"]

    async def converged():
        (project,) = await agent.projects()
        return project.status == "converged" and project.applied_generation == 1
    await until(converged)
    _, stack = await agent.project("shop")
    assert stack == {"services": {"web": {"replicas": 2}}}


async def test_down_removes_everything_then_forgets_the_project(agent, machine):
    submitted = await agent.put_project("shop", {"services": {"web": {}}})
    converged = await agent.wait_applied("shop", submitted.generation, timeout=5)
    assert converged.status == "converged" and "shop-web-1" in machine.containers
    assert await agent.delete_project("shop") == "removing"
    gone = await agent.wait_applied("shop", submitted.generation + 1, timeout=5)
    assert gone.status == "removed" and await agent.projects() == []
    assert machine.containers == {} and machine.networks == {}


async def test_metrics_count_requests_and_steps(agent, machine, dirs):
    await agent.put_project("shop", {"services": {"web": {}}})
    await until(lambda: _has(machine, "shop-web-1"))
    await agent.version()
    found = await _samples(agent)
    put = (("code", "200"), ("method", "PUT"), ("route", "/v1/projects/{name}"))
    assert found[("pcompose_api_requests_total", put)] == 1
    assert found[("pcompose_projects", ())] == 1
    done = (("action", "create"), ("status", "done"))
    await until(lambda: _sample_is(agent, ("pcompose_steps_total", done), 2))
    connector = aiohttp.UnixConnector(path=str(dirs[1] / "agent.sock"))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get("http://agent/metrics") as response:
            assert response.headers["Content-Type"] == prometheus_client.CONTENT_TYPE_LATEST


async def test_a_second_agent_on_the_same_run_dir_refuses(agent, dirs):
    with pytest.raises(daemon.AlreadyRunning):
        await daemon.run(dirs[0], dirs[1], stop=asyncio.Event())
    assert await agent.ping()


async def _has(machine, name):
    return name in machine.containers


async def _samples(agent) -> dict:
    """(name, sorted labels) -> value of every sample of /metrics, as a scraper parses it."""
    families = parser.text_string_to_metric_families(await agent.metrics())
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


async def _sample_is(agent, key, value) -> bool:
    return (await _samples(agent)).get(key) == value


async def test_a_failure_shows_in_the_project_status_with_its_reason(agent, machine):
    machine.fail["network:default"] = errors.PermanentError("network shop_default is in use")
    await agent.put_project("shop", {"services": {"web": {}}})

    async def failed():
        (project,) = await agent.projects()
        return project.status == "failed"
    await until(failed)
    with pytest.raises(client.ApiError, match="shop_default is in use"):
        await agent.wait_applied("shop", 1, timeout=5)
    (project,) = await agent.projects()
    assert project.reason == "network:default create: network shop_default is in use"
    assert machine.containers == {}
    steps = await agent.project_steps("shop")
    assert (steps["service:web:1"].status, steps["service:web:1"].message) == \
        ("skipped", "#1 failed")
    assert steps["network:default"].message == "network shop_default is in use"


async def test_a_container_exit_file_brings_a_reconcile_that_restarts_it(dirs, machine):
    root, run_dir = dirs
    exits = root.parent / "exits"
    exits.mkdir(parents=True)
    runtime = daemon.Runtime(FakeTranslator(), machine, machine, exit_dirs=(exits,),
                             project_of_exit=lambda path: path.name.rsplit("-", 2)[0])
    stop = asyncio.Event()
    task = asyncio.ensure_future(daemon.run(root, run_dir, runtime=runtime, resync=3600,
                                            stop=stop))
    try:
        async with client.AgentClient(run_dir, timeout=5) as agent:
            await until(agent.ping)
            await agent.put_project("shop", {"services": {"web": {"restart": "always"}}})
            # The pass that created it and the one that found nothing left to do; the next
            # would come only with the hourly resync.
            await until(lambda: _sample_is(agent, ("pcompose_reconciles_total", (("result", "ok"),)), 2))
            machine.containers["shop-web-1"] = dataclasses.replace(
                machine.containers["shop-web-1"], state=model.ContainerState.EXITED,
                exit_code=1)
            machine.log.clear()
            (exits / "shop-web-1").write_text("1")
            await until(lambda: _logged(machine, "service:web:1 start"))
            assert machine.containers["shop-web-1"].state is model.ContainerState.RUNNING
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _logged(machine, line):
    return line in machine.log
