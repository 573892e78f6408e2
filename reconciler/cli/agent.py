"""`pcompose agent`: run the reconciler and its API in the foreground."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from reconciler.cli import common


def register(verbs: argparse._SubParsersAction) -> None:
    """Add the `agent` verb."""
    parser = verbs.add_parser("agent", help="Run the pcompose agent in the foreground")
    parser.add_argument("--resync", type=float, default=30.0, metavar="SECONDS",
                        help="Look at every project again this often (default 30)")
    parser.add_argument("--log-format", choices=("auto", "json", "console"), default="auto",
                        help="Log lines as JSON or for a terminal (default: JSON unless a tty)")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"))
    parser.add_argument("--stop", action="store_true",
                        help="Stop the agent that serves --run-dir (containers keep running)")
    parser.set_defaults(handler=run)


def stop(run_dir: Path, timeout: float = 10.0) -> int:
    """SIGTERM to the agent on `run_dir`, by the PID it reports; its containers live on."""
    import os
    import signal
    import time

    from reconciler.agent import client

    async def pid() -> int | None:
        try:
            async with client.AgentClient(run_dir) as agent:
                return (await agent.version()).pid
        except client.AgentUnavailable:
            return None

    found = asyncio.run(pid())
    if found is None:
        print(f"no agent answers on {run_dir}")
        return 0
    os.kill(found, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(found):
        time.sleep(0.05)
    print(f"agent {found} stopped")
    return 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped
    except FileNotFoundError:
        return False


def run(args: argparse.Namespace) -> int:
    if args.stop:
        return stop(Path(args.run_dir))
    # Imported here: every other verb would otherwise pay for the agent's imports at start.
    from reconciler.agent import daemon, logs, store

    json_output = {"auto": None, "json": True, "console": False}[args.log_format]
    logs.configure(json_output=json_output, level=args.log_level)
    try:
        root, run_dir = Path(args.root), Path(args.run_dir)
        runtime = daemon.default_runtime(root, run_dir, args.host_netns)
        asyncio.run(daemon.run(root, run_dir, runtime=runtime,
                               resync=args.resync))
    except daemon.AlreadyRunning as error:
        raise common.UserFacingError(str(error), daemon.EXIT_ALREADY_RUNNING) from None
    except store.Damaged as error:
        raise common.UserFacingError(str(error)) from None
    except daemon.TaskFailed as error:  # logged with its traceback above
        raise common.UserFacingError(f"the agent stopped: {error}") from None
    except OSError as error:
        raise common.UserFacingError(f"cannot start the agent: {error}") from None
    return 0
