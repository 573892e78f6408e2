"""Start an agent in the background when none answers, and wait until its socket does."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from reconciler.agent import client


def agent_command(root: Path, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "reconciler.cli", "--root", str(root),
            "--run-dir", str(run_dir), "agent"]


def log_path(root: Path) -> Path:
    return Path(root) / "logs" / "agent.log"


def spawn(root: Path, run_dir: Path) -> subprocess.Popen:
    """The agent, detached: its own session, so a Ctrl-C of the CLI does not reach it."""
    log = log_path(root)
    log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(log, "ab") as out:
        return subprocess.Popen(agent_command(root, run_dir), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, cwd="/",
                                start_new_session=True, close_fds=True)


async def ensure_agent(root: Path, run_dir: Path, *,
                       timeout: float = 15.0) -> subprocess.Popen | None:
    """None if an agent already answers; else the one started here, once it answers.

    If two callers race, one agent wins the run dir's lock and the other exits; both
    callers then find the winner on the socket."""
    if await _answers(run_dir):
        return None
    process = spawn(Path(root), Path(run_dir))
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await _answers(run_dir):
            return process if process.poll() is None else None
        await asyncio.sleep(0.05)
    if process.poll() is None:
        process.kill()
        process.wait()
    raise client.AgentUnavailable(
        f"the agent did not answer on {run_dir} within {timeout:g}s; "
        f"see {log_path(root)}: {_tail(log_path(root))}")


async def _answers(run_dir: Path) -> bool:
    async with client.AgentClient(run_dir, timeout=2.0) as agent:
        return await agent.ping()


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
