"""The machine against a stack, exactly: a test starts the agent alone (no `up` to help it),
waits until it has made what its store wants, and names every difference it still finds."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

from controllers import context
from runtime.net import ipam, records
from runtime.oci import lifecycle
from tests.support import cgroupfs, waiting


def gone(pid: int) -> bool:
    """The process ended (a zombie counts: it runs nothing any more)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def kill_9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    waiting.wait_for(lambda: gone(pid), what=f"PID {pid} gone")


@contextlib.contextmanager
def agent_alone(stack):
    """`pcompose agent` in the background and nothing else: no `up` to help it."""
    with open(stack.root / "logs" / "agent.log", "ab") as log:
        proc = subprocess.Popen(stack.argv("agent"), cwd="/", env=stack.env(), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        waiting.wait_for(lambda: stack.agent_pid() == proc.pid or proc.poll() is not None,
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


def container_id(stack, name: str) -> str:
    """The ID the machine keys a container by (its runc state, bundle, cgroup), from `ps -a`;
    a one-off container's reference as `run -d` printed it when ps does not list it."""
    for row in ps(stack).values():
        if name in (row["Name"], row["ID"]):
            return row["ID"]
    return name


def names_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def conmons(stack) -> dict[int, str]:
    """PID -> container of every live conmon under this run dir."""
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


def mismatches(stack, want: set[str]) -> list[str]:
    """How the machine differs from the containers named `want` running: each under its own
    live conmon with one address of its own, and nothing of any other container anywhere (runc
    state, bundle, root and its mount, netns, attachment, lease, cgroup). What the machine
    keys by container ID counts as the name `ps` gives that ID; a container found twice, under
    both, counts twice."""
    ctx = context.make(stack.root, stack.run_dir)
    wrong = []
    rows = ps(stack)
    if set(rows) != want or {r["State"] for r in rows.values()} != {"running"}:
        wrong.append(f"ps: {sorted((n, r['State']) for n, r in rows.items())}")
    named = {row["ID"]: name for name, row in rows.items()}

    def differs(what: str, keys) -> None:
        found = sorted(named.get(k, k) for k in keys)
        if found != sorted(want):
            wrong.append(f"{what}: {found}")

    ids = [rows[n]["ID"] for n in sorted(want) if n in rows]
    unmonitored = [named[i] for i in ids if lifecycle.monitor_pid(ctx.layout, i) is None]
    if unmonitored:
        wrong.append(f"without a live conmon: {unmonitored}")
    differs("conmons", conmons(stack).values())
    differs("runc", names_in(stack.run_dir / "runc"))
    differs("bundles", names_in(stack.root / "containers"))
    differs("roots", names_in(stack.root / "rootfs"))
    differs("netns", names_in(stack.run_dir / "netns"))
    differs("attachments", records.attachments(stack.root))
    leases = [lease for pool in ipam.observe(stack.root).values() for lease in pool.leases]
    differs("leases", [lease.owner for lease in leases])
    if len({lease.ipv4 for lease in leases}) != len(leases):
        wrong.append(f"an address twice: {sorted(lease.ipv4 for lease in leases)}")
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(f"{stack.root}/rootfs/")]
    differs("root mounts", [Path(m).parent.name for m in mounts])
    differs("cgroups", cgroupfs.children(f"{ctx.cgroup_parent}/{stack.project}"))
    return wrong


def converges(stack, want: set[str], timeout: float = 90.0) -> None:
    """Waits until the machine is exactly `want`; fails with the last differences found."""
    last: list[list[str]] = [[]]

    def matches() -> bool:
        last[0] = mismatches(stack, want)
        return not last[0]

    try:
        waiting.wait_for(matches, timeout=timeout, what="the stack, exactly")
    except AssertionError:
        raise AssertionError(f"the machine does not match the stack: {last[0]}") from None
