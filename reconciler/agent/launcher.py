"""Start an agent in the background when none answers, and wait until its socket does."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from reconciler.agent import plainclient, wire
from runtime import statefiles

# The exit code of an agent that found another on its run dir (daemon uses it too); it lives
# here so that the CLI can start an agent without importing the whole agent.
EXIT_ALREADY_RUNNING = 3


def agent_command(root: Path, run_dir: Path, host_netns: str | None = None) -> list[str]:
    netns = ["--host-netns", str(host_netns)] if host_netns else []
    return [sys.executable, "-m", "reconciler.cli", "--root", str(root),
            "--run-dir", str(run_dir), *netns, "agent"]


def log_path(root: Path) -> Path:
    return Path(root) / "logs" / "agent.log"


def spawn(root: Path, run_dir: Path, host_netns: str | None = None) -> subprocess.Popen:
    """The agent, detached: its own session, so a Ctrl-C of the CLI does not reach it."""
    log = log_path(root)
    try:
        # The root first: made here on a fresh machine, it must be root's only from the start.
        statefiles.private_dir(statefiles.private_dir(root) / log.parent.name)
        out = open(statefiles.open_private(log), "ab")
    except OSError as error:
        raise wire.AgentUnavailable(f"cannot start the agent: {error}") from None
    with out:
        return subprocess.Popen(agent_command(root, run_dir, host_netns), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, cwd="/",
                                start_new_session=True, close_fds=True)


async def ensure_agent(root: Path, run_dir: Path, *, timeout: float = 15.0,
                       host_netns: str | None = None) -> subprocess.Popen | None:
    """ensure(), for callers inside an event loop."""
    import asyncio

    return await asyncio.to_thread(ensure, root, run_dir, timeout=timeout,
                                   host_netns=host_netns)


def ensure(root: Path, run_dir: Path, *, timeout: float = 15.0,
           host_netns: str | None = None) -> subprocess.Popen | None:
    """None if an agent already answers; else the one started here, once it answers.

    If two callers race, one agent wins the run dir's lock and the other exits; both
    callers then find the winner on the socket."""
    if answering_pid(run_dir) is not None:
        return None
    process = spawn(Path(root), Path(run_dir), host_netns)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = answering_pid(run_dir)
        if pid == process.pid:
            return process
        if pid is not None:
            # Another caller's agent won the run dir; ours gives up on the lock and exits.
            _reap(process, deadline - time.monotonic())
            return None
        code = process.poll()
        if code is not None and code != EXIT_ALREADY_RUNNING:
            raise wire.AgentUnavailable(
                f"the agent exited with code {code}; see {log_path(root)}: "
                f"{_tail(log_path(root))}")
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
        process.wait()
    raise wire.AgentUnavailable(
        f"the agent did not answer on {run_dir} within {timeout:g}s; "
        f"see {log_path(root)}: {_tail(log_path(root))}")


def answering_pid(run_dir: Path) -> int | None:
    """The PID of the agent that answers on `run_dir`'s socket, if one does."""
    with plainclient.PlainClient(Path(run_dir), timeout=2.0) as agent:
        try:
            return agent.version()["pid"]
        except (wire.AgentUnavailable, wire.ApiError):
            return None


def _reap(process: subprocess.Popen, timeout: float) -> None:
    try:
        process.wait(max(timeout, 1.0))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
