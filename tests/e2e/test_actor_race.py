"""One actor per project: a user's lifecycle verbs racing the agent's passes (a short resync,
`up -d` submissions, exits under `restart: always`) never leave a second container in a
slot, nor a container without its network or its published port."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import subprocess

import pytest

from tests.e2e import conftest
from tests.support import cgroupfs

RESYNC = 0.2  # the agent looks at the project again this often: passes race every verb
ROUNDS = 8

STACK = """\
services:
  web:
    image: busybox
    restart: always
    stop_signal: SIGKILL
    command: ["sh", "-c", "echo served > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]
    ports:
      - "8080:80"
  side:
    image: busybox
    restart: always
    stop_signal: SIGKILL
    command: ["sleep", "1000"]
    scale: 4
"""


@pytest.fixture
def agent(stack):
    """An agent with a very short resync."""
    try:
        with conftest.own_agent(stack, RESYNC) as process:
            yield process
    finally:
        _kill_left_behind(stack)


def _kill_left_behind(stack) -> None:
    """Processes a failed run left in the project's cgroups (a half-made container's `runc
    init`), killed by PID so that the stack's removal can remove the cgroups."""
    from controllers import context

    parent = context.make(stack.root, stack.run_dir).cgroup_parent
    for top in cgroupfs.dirs(f"{parent}/{stack.project}"):
        for procs in top.rglob("cgroup.procs") if top.is_dir() else ():
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def _containers(stack) -> list[dict]:
    out = stack.pc("ps", "-a", "--format", "json").stdout
    return [json.loads(line) for line in out.splitlines()]


def _runc_ids(stack) -> list[str]:
    """Every container runc keeps under this run dir, whatever ps makes of them."""
    listed = subprocess.run(["runc", "--root", str(stack.run_dir / "runc"), "list", "-q"],
                            capture_output=True, text=True, check=True).stdout
    return listed.split()


def _address(stack, service: str, index: int) -> str:
    out = stack.pc("exec", "--index", str(index), service, "ip", "-o", "-4", "addr", "show",
                   "eth0").stdout
    return out.split()[3].split("/")[0]


@pytest.mark.timeout(900)  # dozens of CLI runs racing each other on a shared machine
def test_verbs_racing_passes_leave_one_container_per_slot_with_its_network(stack, agent):
    p = stack.project
    stack.write(STACK)
    stack.pc("up", "-d", "--wait")

    def storm(verbs: tuple[tuple[str, ...], ...]) -> None:
        for _ in range(ROUNDS):
            for verb in verbs:
                # A verb may find its container in another state by now: only the end counts.
                stack.pc(*verb, check=False)

    # Each start of an exited container makes its runc container anew: the moment a pass
    # must not look at. Every side replica is killed and started again at once, many times.
    storms = (
        (("kill", "side"), ("start", "side"), ("kill", "web"), ("start", "web")),
        (("stop", "-t", "0", "web"), ("start", "web"), ("restart", "-t", "0", "side")),
        (("up", "-d"), ("stop", "-t", "0", "side"), ("start", "side"), ("up", "-d")),
    )
    with concurrent.futures.ThreadPoolExecutor(len(storms)) as pool:
        for done in [pool.submit(storm, verbs) for verbs in storms]:
            done.result()

    # What a user does after such a session, and what they then see.
    stack.pc("up", "-d", "--wait")
    rows = _containers(stack)
    names = sorted(r["Name"] for r in rows)
    assert names == [*(f"{p}-side-{n}" for n in range(1, 5)), f"{p}-web-1"], rows
    assert all(r["State"] == "running" for r in rows), rows
    ids = _runc_ids(stack)  # no second container hidden under a slot's name
    assert len(ids) == 5 and all(any(i.startswith(r["ID"]) for i in ids) for r in rows), ids
    addresses = [_address(stack, "web", 1), *(_address(stack, "side", n) for n in range(1, 5))]
    assert len(set(addresses)) == 5, addresses
    fetched = subprocess.run(["ip", "netns", "exec", stack.host_netns, "busybox", "wget",
                              "-qO-", "http://127.0.0.1:8080/"], capture_output=True, text=True,
                             timeout=20)
    assert fetched.stdout == "served\n", fetched.stderr
    # And once it is down, nothing of it is left: no container half made by a verb and a
    # pass at once (its `runc init` would hold its cgroup for ever).
    stack.pc("down", "-v", "-t", "0")
    assert conftest.leftovers(stack) == []


ONE = """\
services:
  web:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "1000"]
"""


def test_a_repeated_create_that_fails_keeps_the_container_an_earlier_one_made(stack):
    """The same create asked for again (a step repeated after an answer was lost) that then
    fails undoes nothing of the container the first one made: it runs on, with its network."""
    import asyncio
    from unittest import mock

    from controllers import context, services
    from reconciler import spec
    from runtime.oci import lifecycle, observe

    stack.write(ONE)
    stack.pc("up", "-d")
    name = f"{stack.project}-web-1"
    [before] = _containers(stack)
    address = _address(stack, "web", 1)
    project = spec.load([str(stack.dir / "compose.yaml")], project_name=stack.project)
    ctx = context.make(stack.root, stack.run_dir, netns=f"/run/netns/{stack.host_netns}")
    made = asyncio.run(observe.named(ctx.layout, name))
    assert made is not None

    async def broken_start(*args, **kwargs) -> None:
        raise RuntimeError("runc start: the machine said no")

    with mock.patch.object(lifecycle, "start", broken_start), \
            pytest.raises(RuntimeError, match="the machine said no"):
        asyncio.run(services.run_container(
            ctx, project.stack, stack.project, "web", replica=1, name=name,
            config_hash=made.config_hash))
    assert [(c["ID"], c["State"]) for c in _containers(stack)] == [(before["ID"], "running")]
    assert _address(stack, "web", 1) == address
