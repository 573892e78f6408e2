"""Start an agent in the background when none answers, and wait until its socket does."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from reconciler.agent import client


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
        log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        out = open(log, "ab")
    except OSError as error:
        raise client.AgentUnavailable(f"cannot start the agent: {error}") from None
    with out:
        return subprocess.Popen(agent_command(root, run_dir, host_netns), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, cwd="/",
                                start_new_session=True, close_fds=True)


async def ensure_agent(root: Path, run_dir: Path, *, timeout: float = 15.0,
                       host_netns: str | None = None) -> subprocess.Popen | None:
    """None if an agent already answers; else the one started here, once it answers.

    If two callers race, one agent wins the run dir's lock and the other exits; both
    callers then find the winner on the socket."""
    if await _answers(run_dir):
        return None
    process = spawn(Path(root), Path(run_dir), host_netns)
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        pid = await _answering_pid(run_dir)
        if pid == process.pid:
            return process
        if pid is not None:
            # Another caller's agent won the run dir; ours gives up on the lock and exits.
            await _reap(process, deadline - asyncio.get_running_loop().time())
            return None
        code = process.poll()
        if code is not None and code != EXIT_ALREADY_RUNNING:
            raise client.AgentUnavailable(
                f"the agent exited with code {code}; see {log_path(root)}: "
                f"{_tail(log_path(root))}")
        await asyncio.sleep(0.05)
    if process.poll() is None:
        process.kill()
        process.wait()
    raise client.AgentUnavailable(
        f"the agent did not answer on {run_dir} within {timeout:g}s; "
        f"see {log_path(root)}: {_tail(log_path(root))}")


async def _answers(run_dir: Path) -> bool:
    return await _answering_pid(run_dir) is not None


async def _answering_pid(run_dir: Path) -> int | None:
    async with client.AgentClient(run_dir, timeout=2.0) as agent:
        try:
            return (await agent.version()).pid
        except (client.AgentUnavailable, client.ApiError):
            return None


async def _reap(process: subprocess.Popen, timeout: float) -> None:
    try:
        await asyncio.to_thread(process.wait, max(timeout, 1.0))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
