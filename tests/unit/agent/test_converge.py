"""POST /v1/up and /v1/down: the agent loads the user's stack files with the user's working
directory and environment, stores it, and streams the steps until it converged."""

from __future__ import annotations

import asyncio
import os

import pytest

from reconciler.agent import plainclient, store, wire
from tests.unit.agent.test_api import agent, dirs, machine  # noqa: F401 (fixtures)

STACK = """\
services:
  web:
    image: busybox
    command: ["httpd", "-f", "-p", "${PORT:-80}"]
  worker:
    image: busybox
    profiles: [extra]
"""


def stream(run_dir, path: str, body: dict) -> list[dict]:
    with plainclient.PlainClient(run_dir, timeout=10) as client:
        return list(client.stream("POST", path, body))


def load(cwd, files=("compose.yaml",), environ=None, **extra) -> dict:
    return {"cwd": str(cwd), "environ": environ if environ is not None else {"HOME": "/root"},
            "files": list(files), "project_name": "shop", **extra}


@pytest.fixture
def project_dir(tmp_path):
    (tmp_path / "compose.yaml").write_text(STACK)
    return tmp_path


async def test_up_loads_relative_to_the_callers_directory_and_converges(agent, dirs, machine,
                                                                        project_dir):
    assert os.getcwd() != str(project_dir)
    lines = await asyncio.to_thread(stream, dirs[1], "/v1/up",
                                    {"load": load(project_dir), "options": {}})
    accepted, result = lines[0], lines[-1]
    assert accepted["type"] == "accepted" and accepted["project"] == "shop"
    assert accepted["services"] == ["web"]  # worker is in a profile that is not active
    assert result == {"type": "result", "ok": True, "error": None, "containers": []}
    assert any(line["type"] == "step" and line["resource"] == "service:web:1"
               and line["status"] == "done" for line in lines)
    assert "shop-web-1" in machine.containers
    info, stack = await agent.project("shop")
    assert info.applied_generation == 1
    assert info.config_files == (str(project_dir / "compose.yaml"),)
    assert stack["services"]["web"]["command"] == ["httpd", "-f", "-p", "80"]


async def test_up_interpolates_with_the_callers_environment_and_profiles(agent, dirs, machine,
                                                                         project_dir):
    lines = await asyncio.to_thread(stream, dirs[1], "/v1/up", {
        "load": load(project_dir, environ={"PORT": "8080"}, profiles=["extra"]),
        "options": {"services": ["web"]}})
    assert lines[0]["services"] == ["web"]
    _, stack = await agent.project("shop")
    assert stack["services"]["web"]["command"] == ["httpd", "-f", "-p", "8080"]


@pytest.mark.parametrize("body, message", [
    ({"options": {}}, "load: expected a JSON object"),
    ({"load": {"cwd": "relative"}}, "load.cwd: expected an absolute path"),
    ({"load": {"cwd": "/", "environ": {"A": 1}}}, "load.environ"),
    ({"load": "L", "options": {"scale": ["web=x"]}}, "--scale web=x: expected SERVICE=NUM"),
    ({"load": "L", "options": {"services": ["nope"]}}, "no such service: nope"),
    ({"load": "L", "options": {"force_recreate": True, "no_recreate": True}},
     "--force-recreate and --no-recreate are incompatible"),
    ({"load": "L", "wait": "yes"}, "wait: expected true or false"),
    ({"load": "L", "extra": 1}, "unknown key(s) extra"),
])
async def test_a_bad_up_says_why_and_stores_nothing(agent, dirs, project_dir, body, message):
    if body.get("load") == "L":
        body = {**body, "load": load(project_dir)}
    with pytest.raises(wire.ApiError, match=message.replace("(", r"\(").replace(")", r"\)")) \
            as caught:
        await asyncio.to_thread(stream, dirs[1], "/v1/up", body)
    assert caught.value.status == 400
    assert await agent.projects() == []


async def test_a_wrong_stack_file_names_its_line_and_stores_nothing(agent, dirs, project_dir):
    (project_dir / "compose.yaml").write_text(STACK + "    ports: [\"x:80\"]\n")
    with pytest.raises(wire.ApiError) as caught:
        await asyncio.to_thread(stream, dirs[1], "/v1/up",
                                {"load": load(project_dir), "options": {}})
    assert str(caught.value).startswith(f"{project_dir}/compose.yaml:8:")
    assert await agent.projects() == []


async def test_down_by_name_or_by_files_removes_the_project(agent, dirs, machine, project_dir):
    await asyncio.to_thread(stream, dirs[1], "/v1/up", {"load": load(project_dir)})
    lines = await asyncio.to_thread(stream, dirs[1], "/v1/down",
                                    {"load": load(project_dir), "volumes": True})
    assert lines[0] == {"type": "accepted", "project": "shop", "known": True}
    assert lines[-1]["ok"] and lines[-1]["networks"] == ["shop_default"]
    assert machine.containers == {} and await agent.projects() == []
    again = await asyncio.to_thread(stream, dirs[1], "/v1/down", {"project": "shop"})
    assert again[0]["known"] is False and again[-1]["ok"]
    with pytest.raises(wire.ApiError, match='invalid project name "Shop"'):
        await asyncio.to_thread(stream, dirs[1], "/v1/down", {"project": "Shop"})


async def test_up_of_one_service_leaves_the_others_as_they_were(agent, dirs, project_dir):
    def hashes() -> dict[str, str]:
        db = store.Store(dirs[0])
        try:
            return dict(db.get("shop").hashes)
        finally:
            db.close()

    await asyncio.to_thread(stream, dirs[1], "/v1/up",
                            {"load": load(project_dir, profiles=["extra"])})
    before = hashes()
    (project_dir / "compose.yaml").write_text(STACK.replace('"httpd", ', '"httpd", "-v", '))
    lines = await asyncio.to_thread(stream, dirs[1], "/v1/up", {
        "load": load(project_dir, profiles=["extra"]), "options": {"services": ["worker"]}})
    assert lines[0]["services"] == ["worker"] and lines[-1]["ok"]
    assert hashes() == before  # web changed, but `up worker` leaves it as it was wanted
    await asyncio.to_thread(stream, dirs[1], "/v1/up",
                            {"load": load(project_dir, profiles=["extra"])})
    assert hashes()["web"] != before["web"] and hashes()["worker"] == before["worker"]


async def test_ps_names_the_project_and_its_services(agent, dirs, project_dir):
    def ps(body):
        with plainclient.PlainClient(dirs[1], timeout=10) as client:
            return client.call("POST", "/v1/ps", body)

    answer = await asyncio.to_thread(ps, {"load": load(project_dir)})
    assert answer == {"project": "shop", "services": ["web", "worker"], "containers": []}
    assert (await asyncio.to_thread(ps, {"project": "shop"}))["services"] is None
    with pytest.raises(wire.ApiError, match="unknown key"):
        await asyncio.to_thread(ps, {"project": "shop", "all": True})


async def test_ls_lists_the_projects_the_agent_keeps(agent, dirs, project_dir):
    await asyncio.to_thread(stream, dirs[1], "/v1/up", {"load": load(project_dir)})

    def ls():
        with plainclient.PlainClient(dirs[1], timeout=10) as client:
            return client.call("GET", "/v1/ls")

    assert await asyncio.to_thread(ls) == [{
        "name": "shop", "status": "converged", "states": [],
        "config_files": [str(project_dir / "compose.yaml")]}]


@pytest.mark.parametrize("body, message", [
    ({"verb": "explode"}, "verb: expected one of stop, start"),
    ({"verb": "stop", "services": ["nope"], "load": "L"}, "no such service: nope"),
    ({"verb": "stop", "timeout": "soon", "project": "shop"}, "timeout: expected a number"),
    ({"verb": "kill", "project": "shop", "all": True}, "unknown key(s) all"),
])
async def test_a_bad_lifecycle_verb_says_why(agent, dirs, project_dir, body, message):
    if body.get("load") == "L":
        body = {**body, "load": load(project_dir)}
    with pytest.raises(wire.ApiError, match=message.replace("(", r"\(").replace(")", r"\)")):
        await asyncio.to_thread(stream, dirs[1], "/v1/act", body)
