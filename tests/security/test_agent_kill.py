"""The agent killed (kill -9) while it makes a stack, or a container's monitor killed: started
alone again, the agent makes the machine match its store exactly, with every container under a
live conmon, each address once, and nothing left of the containers it had half made."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from controllers import context
from runtime.net import ipam, records
from runtime.oci import lifecycle
from tests.e2e import conftest
from tests.support.waiting import wait_for

SERVICES = [f"s{i}" for i in range(1, 7)]


def stack_text() -> str:
    lines = ["services:"]
    for name in SERVICES:
        lines += [f"  {name}:", "    image: busybox",
                  '    command: ["sh", "-c", "echo started; exec sleep 100000"]',
                  "    stop_signal: SIGKILL"]
    return "\n".join(lines) + "\n"


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def kill_9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: gone(pid), what=f"PID {pid} gone")


@contextlib.contextmanager
def agent_alone(stack):
    """`pcompose agent` in the background and nothing else: no `up` to help it."""
    with open(stack.root / "logs" / "agent.log", "ab") as log:
        proc = subprocess.Popen(stack.argv("agent"), cwd="/", env=stack.env(), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        wait_for(lambda: stack.agent_pid() == proc.pid or proc.poll() is not None,
                 what="the agent's socket")
        assert proc.poll() is None, "the agent exited"
        yield proc
    finally:
        if proc.poll() is None:
            # down -v while this agent runs, so that the fixture finds nothing more to do
            stack.pc("down", "-v", "-t", "0", check=False)
            proc.terminate()
        proc.wait(30)


def ps(stack) -> dict[str, dict]:
    done = stack.pc("ps", "-a", "--format", "json")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return {row["Name"]: row for row in rows}


def names_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def conmons(stack) -> dict[int, str]:
    """PID -> container of every conmon under this run dir."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"conmon") and str(stack.run_dir).encode() in b" ".join(argv) \
                and not gone(int(proc.name)):
            found[int(proc.name)] = argv[argv.index(b"-c") + 1].decode()
    return found


def mismatches(stack) -> list[str]:
    """How the machine differs from the stack: each wanted container running under its own
    live conmon with one address of its own, and nothing of any other container anywhere."""
    ctx = context.make(stack.root, stack.run_dir)
    want = {f"{stack.project}-{s}-1" for s in SERVICES}
    wrong = []
    rows = ps(stack)
    if set(rows) != want or {r["State"] for r in rows.values()} != {"running"}:
        wrong.append(f"ps: {sorted((n, r['State']) for n, r in rows.items())}")
    unmonitored = sorted(n for n in want if lifecycle.monitor_pid(ctx.layout, n) is None)
    if unmonitored:
        wrong.append(f"without a live conmon: {unmonitored}")
    if sorted(conmons(stack).values()) != sorted(want):
        wrong.append(f"conmons: {sorted(conmons(stack).values())}")
    for what, found in [
            ("runc", names_in(stack.run_dir / "runc")),
            ("bundles", names_in(stack.root / "containers")),
            ("roots", names_in(stack.root / "rootfs")),
            ("netns", names_in(stack.run_dir / "netns")),
            ("attachments", set(records.attachments(stack.root)))]:
        if found != want:
            wrong.append(f"{what}: {sorted(found ^ want)} differ")
    leases = [lease for pool in ipam.observe(stack.root).values() for lease in pool.leases]
    if sorted(lease.owner for lease in leases) != sorted(want):
        wrong.append(f"leases: {sorted(lease.owner for lease in leases)}")
    if len({lease.ipv4 for lease in leases}) != len(leases):
        wrong.append(f"an address twice: {sorted(lease.ipv4 for lease in leases)}")
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(f"{stack.root}/rootfs/")]
    if sorted(Path(m).parent.name for m in mounts) != sorted(want):
        wrong.append(f"root mounts: {mounts}")
    cgroups = Path("/sys/fs/cgroup/memory") / ctx.cgroup_parent.strip("/") / stack.project
    made = {c.name for c in cgroups.iterdir() if c.is_dir()} if cgroups.is_dir() else set()
    if made != want:
        wrong.append(f"cgroups: {sorted(made ^ want)} differ")
    return wrong


def converges(stack) -> None:
    last: list[list[str]] = [[]]

    def matches() -> bool:
        last[0] = mismatches(stack)
        return not last[0]

    try:
        wait_for(matches, what="the stack, exactly")
    except AssertionError:
        raise AssertionError(f"the machine does not match the stack: {last[0]}") from None


def down_leaves_nothing(stack) -> None:
    stack.pc("down", "-v")
    assert conftest.leftovers(stack) == []
    assert names_in(stack.root / "rootfs") == set()
    assert names_in(stack.root / "containers") == set()


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
        kill_9(stack.agent_pid())
    finally:
        up.kill()
        up.communicate()
    with agent_alone(stack):
        converges(stack)
        down_leaves_nothing(stack)


def runc(stack, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["runc", "--root", str(stack.run_dir / "runc"), *args],
                          capture_output=True, text=True, check=True, **kw)


def monitor(stack, name: str) -> int:
    ctx = context.make(stack.root, stack.run_dir)
    pid = lifecycle.monitor_pid(ctx.layout, name)
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
    kill_9(stack.agent_pid())
    # runc forgets s5 and the one-off: their bundle, root, namespace and lease stay.
    for name in (f"{p}-s5-1", oneoff):
        conmon_pid = monitor(stack, name)
        runc(stack, "delete", "--force", name)
        kill_9(conmon_pid)
    # s6: created by runc but never started, and no conmon (as when conmon died before the
    # agent could start it).
    s6 = f"{p}-s6-1"
    conmon_pid = monitor(stack, s6)
    runc(stack, "delete", "--force", s6)
    kill_9(conmon_pid)
    # Its process keeps the stdio it is given until it starts: nothing the test waits on.
    subprocess.run(["runc", "--root", str(stack.run_dir / "runc"), "create", "--bundle",
                    str(stack.root / "containers" / s6), s6], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)
    assert json.loads(runc(stack, "state", s6).stdout)["status"] == "created"
    # s4: running on, its conmon killed.
    kill_9(monitor(stack, f"{p}-s4-1"))
    with agent_alone(stack):
        converges(stack)
        assert oneoff not in ps(stack)
        down_leaves_nothing(stack)


def test_a_container_whose_conmon_is_killed_is_made_again_under_a_new_one(stack):
    p = stack.project
    stack.write(stack_text())
    stack.pc("up", "-d")
    name = f"{p}-s1-1"
    before = monitor(stack, name)
    kill_9(before)  # no `up` after this: the agent sees it alone
    after = wait_for(lambda: (pid := lifecycle.monitor_pid(
        context.make(stack.root, stack.run_dir).layout, name)) not in (None, before) and pid,
        what="a new conmon")
    assert after != before
    converges(stack)
    assert stack.pc("logs", "--no-log-prefix", "s1").stdout.splitlines() == ["started"]
    stack.pc("stop", "s1")
    row = ps(stack)[name]
    assert (row["State"], row["ExitCode"]) == ("exited", 137)
