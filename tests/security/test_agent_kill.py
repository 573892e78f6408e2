"""The agent killed (kill -9) while it makes a stack, or a container's monitor killed: started
alone again, the agent makes the machine match its store exactly, with every container under a
live conmon, each address once, and nothing left of the containers it had half made."""

from __future__ import annotations

import json
import subprocess

import pytest

from controllers import context
from runtime.oci import lifecycle
from tests.e2e import conftest
from tests.support import convergence, waiting

SERVICES = [f"s{i}" for i in range(1, 7)]


def stack_text() -> str:
    lines = ["services:"]
    for name in SERVICES:
        lines += [f"  {name}:", "    image: busybox",
                  '    command: ["sh", "-c", "echo started; exec sleep 100000"]',
                  "    stop_signal: SIGKILL"]
    return "\n".join(lines) + "\n"


def want(stack) -> set[str]:
    return {f"{stack.project}-{s}-1" for s in SERVICES}


def converges(stack) -> None:
    convergence.converges(stack, want(stack))


def down_leaves_nothing(stack) -> None:
    stack.pc("down", "-v")
    assert conftest.leftovers(stack) == []
    assert convergence.names_in(stack.root / "rootfs") == set()
    assert convergence.names_in(stack.root / "containers") == set()


# The first "Created" is the network's: killed then, the agent leaves six containers with
# roots mounted and addresses leased that runc never created; later, some made and some not.
@pytest.mark.parametrize("created", [1, 2, 4])
def test_agent_killed_during_up_converges_alone_from_its_store(stack, created):
    stack.write(stack_text())
    up = stack.start("up", "-d")
    try:
        seen = 0
        for line in up.stderr:  # the progress lines, as they come
            if line.rstrip().endswith("  Created"):
                seen += 1
                if seen == created:
                    break
        assert seen == created, "up ended before the agent could be killed"
        convergence.kill_9(stack.agent_pid())
    finally:
        up.kill()
        up.communicate()
    with convergence.agent_alone(stack):
        converges(stack)
        down_leaves_nothing(stack)


def runc(stack, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["runc", "--root", str(stack.run_dir / "runc"), *args],
                          capture_output=True, text=True, check=True, **kw)


def monitor(stack, name: str) -> int:
    ctx = context.make(stack.root, stack.run_dir)
    pid = lifecycle.monitor_pid(ctx.layout, convergence.container_id(stack, name))
    assert pid is not None, f"{name} has no conmon"
    return pid


def test_half_made_containers_are_finished_or_removed(stack):
    """What an agent killed at the worst moments leaves, made deliberately, then the agent
    started alone: a bundle runc never created (root mounted, namespace and address held),
    a container created but never started whose conmon died, one running without its conmon,
    and a half-made one-off container nobody wants any more."""
    p = stack.project
    stack.write(stack_text())
    stack.pc("up", "-d")
    oneoff = stack.pc("run", "-d", "s1", "sleep", "1000").stdout.strip()
    convergence.kill_9(stack.agent_pid())
    # runc forgets s5 and the one-off: their bundle, root, namespace and lease stay.
    for name in (f"{p}-s5-1", oneoff):
        conmon_pid = monitor(stack, name)
        runc(stack, "delete", "--force", convergence.container_id(stack, name))
        convergence.kill_9(conmon_pid)
    # s6: created by runc but never started, and no conmon (as when conmon died before the
    # agent could start it).
    s6 = convergence.container_id(stack, f"{p}-s6-1")
    conmon_pid = monitor(stack, s6)
    runc(stack, "delete", "--force", s6)
    convergence.kill_9(conmon_pid)
    # Its process keeps the stdio it is given until it starts: nothing the test waits on.
    subprocess.run(["runc", "--root", str(stack.run_dir / "runc"), "create", "--bundle",
                    str(stack.root / "containers" / s6), s6], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)
    assert json.loads(runc(stack, "state", s6).stdout)["status"] == "created"
    # s4: running on, its conmon killed.
    convergence.kill_9(monitor(stack, f"{p}-s4-1"))
    with convergence.agent_alone(stack):
        converges(stack)
        rows = convergence.ps(stack).values()
        assert oneoff not in {key for row in rows for key in (row["Name"], row["ID"])}
        down_leaves_nothing(stack)


def test_a_container_whose_conmon_is_killed_is_made_again_under_a_new_one(stack):
    p = stack.project
    stack.write(stack_text())
    stack.pc("up", "-d")
    name = f"{p}-s1-1"
    before = monitor(stack, name)
    convergence.kill_9(before)  # no `up` after this: the agent sees it alone
    after = waiting.wait_for(lambda: (pid := lifecycle.monitor_pid(
        context.make(stack.root, stack.run_dir).layout, convergence.container_id(stack, name)))
        not in (None, before) and pid, what="a new conmon")
    assert after != before
    converges(stack)
    assert stack.pc("logs", "--no-log-prefix", "s1").stdout.splitlines() == ["started"]
    stack.pc("stop", "s1")
    row = convergence.ps(stack)[name]
    assert (row["State"], row["ExitCode"]) == ("exited", 137)
