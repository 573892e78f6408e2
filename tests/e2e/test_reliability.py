"""What must hold when things go wrong: the agent dies, a service is broken, two `up` race."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from controllers import context
from tests.e2e import conftest
from tests.support import cgroupfs, convergence
from tests.support.waiting import wait_for


def containers(stack) -> dict[str, dict]:
    done = stack.pc("ps", "-a", "--format", "json")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return {row["Name"]: row for row in rows}


def pids(stack) -> dict[str, int]:
    """Each container's main PID, read from runc itself."""
    out = {}
    runc_root = stack.run_dir / "runc"
    for entry in sorted(runc_root.iterdir()):
        state = subprocess.run(["runc", "--root", str(runc_root), "state", entry.name],
                               capture_output=True, text=True, check=True)
        out[entry.name] = json.loads(state.stdout)["pid"]
    return out


def test_restarting_the_agent_restarts_no_container(stack):
    stack.write("services:\n" + conftest.sleeper("a") + conftest.sleeper("b"))
    stack.pc("up", "-d")
    before = pids(stack)
    agent = stack.agent_pid()
    os.kill(agent, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{agent}").exists()
             or Path(f"/proc/{agent}/stat").read_text().split()[2] == "Z", what="agent gone")
    stack.pc("up", "-d")  # starts a new agent, which adopts what runs
    assert stack.agent_pid() not in (None, agent)
    assert pids(stack) == before
    assert {n: r["State"] for n, r in containers(stack).items()} == {
        f"{stack.project}-a-1": "running", f"{stack.project}-b-1": "running"}


def test_agent_killed_in_the_middle_of_up_converges_to_exactly_the_stack(stack):
    count = 30
    stack.write("services:\n" + "".join(conftest.sleeper(f"s{i:02d}") for i in range(count)))
    cmd, env = stack.argv("up", "-d"), stack.env()
    up = subprocess.Popen(cmd, cwd=stack.dir, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        runc_root = stack.run_dir / "runc"
        # Kill the agent once some containers exist and others do not yet.
        wait_for(lambda: runc_root.exists() and len(list(runc_root.iterdir())) >= 5,
                 what="the first containers")
        made = len(list(runc_root.iterdir()))
        convergence.kill_9(stack.agent_pid())
    finally:
        up.kill()
        up.wait()
    assert made < count, "the stack was up before the agent could be killed halfway"
    # Only the agent again, no second `up`: what it makes comes from its store alone.
    with convergence.agent_alone(stack):
        convergence.converges(stack, {f"{stack.project}-s{i:02d}-1" for i in range(count)})
        assert len(set(pids(stack).values())) == count  # none twice, none lost


def test_a_broken_service_does_not_block_the_others(stack):
    stack.write("services:\n" + conftest.sleeper("good")
                + "  gone:\n    image: nosuchimage:1\n    pull_policy: never\n"
                + '  fails:\n    image: busybox\n    command: ["sh", "-c", "exit 3"]\n')
    done = stack.pc("up", "-d", check=False)
    assert done.returncode != 0
    assert "nosuchimage" in done.stdout + done.stderr
    rows = containers(stack)
    assert rows[f"{stack.project}-good-1"]["State"] == "running"
    failed = rows[f"{stack.project}-fails-1"]
    assert failed["State"] == "exited" and failed["ExitCode"] == 3
    assert f"{stack.project}-gone-1" not in rows


def test_restart_policy_restarts_a_failing_container_and_gives_up(stack):
    # The control fails the same way and is restarted twice more: its fourth restart comes
    # after the backoff (0.1, 0.2, 0.4, 0.8 s) has long passed the point where a third of
    # flaky's would have come, so by then flaky has shown it gave up.
    fails = '    image: busybox\n    command: ["sh", "-c", "echo run; exit 5"]\n'
    stack.write("services:\n  flaky:\n" + fails + '    restart: "on-failure:2"\n'
                "  control:\n" + fails + '    restart: "on-failure:4"\n')
    stack.pc("up", "-d", check=False)

    def inspected(service: str) -> dict:
        [found] = json.loads(stack.pc("inspect", f"{stack.project}-{service}-1").stdout)
        return found

    def control_gave_up() -> bool:
        # While runc makes it again for a restart, the container is briefly not listed.
        done = stack.pc("inspect", f"{stack.project}-control-1", check=False)
        found = json.loads(done.stdout or "[]")
        return bool(found) and found[0]["RestartCount"] == 4 \
            and found[0]["State"]["Status"] == "exited"

    wait_for(control_gave_up, what="the control's four restarts")
    flaky = inspected("flaky")
    assert (flaky["RestartCount"], flaky["State"]["Status"]) == (2, "exited")
    assert containers(stack)[f"{stack.project}-flaky-1"]["State"] == "exited"
    logs = stack.pc("logs", "--no-log-prefix", "flaky").stdout
    assert logs.count("run") == 3


def test_a_limits_change_is_applied_in_place(stack):
    stack.write("services:\n" + conftest.sleeper("app", mem_limit="64m"))
    stack.pc("up", "-d")
    before = pids(stack)
    stack.write("services:\n" + conftest.sleeper("app", mem_limit="96m"))
    stack.pc("up", "-d")
    assert pids(stack) == before  # not recreated, not restarted
    agent = context.make(stack.root, stack.run_dir)
    cid = convergence.container_id(stack, f"{stack.project}-app-1")
    limit = cgroupfs.v1_file(f"{agent.cgroup_parent}/{stack.project}/{cid}",
                             "memory.limit_in_bytes")
    assert int(limit.read_text()) == 96 * 1024 * 1024


def test_two_ups_at_once_make_each_container_once(stack):
    stack.write("services:\n" + conftest.sleeper("a") + conftest.sleeper("b", deploy="{replicas: 3}"))
    cmd, env = stack.argv("up", "-d"), stack.env()
    ups = [subprocess.Popen(cmd, cwd=stack.dir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in ups]
    assert [p.returncode for p in ups] == [0, 0], outputs
    rows = containers(stack)
    expected = {f"{stack.project}-a-1"} | {f"{stack.project}-b-{n}" for n in (1, 2, 3)}
    assert set(rows) == expected
    assert len(pids(stack)) == 4


def test_a_name_already_in_use_is_refused_and_the_container_keeps_running(stack):
    stack.write("services:\n" + conftest.sleeper("a"))
    stack.pc("up", "-d")
    before = pids(stack)
    taken = f"{stack.project}-a-1"
    done = stack.pc("run", "-d", "--name", taken, "a", "true", check=False)
    assert done.returncode != 0 and "already in use" in done.stdout + done.stderr
    assert pids(stack) == before
    assert containers(stack)[taken]["State"] == "running"


def test_an_unreachable_registry_is_tried_again_while_a_missing_image_is_not(stack):
    # Port 9 on loopback: nothing listens, the pull is refused at once.
    stack.write("services:\n" + conftest.sleeper("good")
                + "  far:\n    image: 127.0.0.1:9/busybox:1\n")
    done = stack.pc("up", "-d", check=False)
    assert done.returncode != 0
    assert "127.0.0.1:9" in done.stderr and "(the agent keeps trying)" in done.stderr
    status, project = stack.agent_call("GET", f"/v1/projects/{stack.project}")
    assert status == 200 and project["status"] == "retrying"
    assert containers(stack)[f"{stack.project}-good-1"]["State"] == "running"
