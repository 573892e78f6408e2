"""`up` and `down`: the agent loads the stack and converges it; this prints its progress.

The CLI sends the global options, its working directory and its environment; the agent loads
the stack as this shell would, stores it, and streams the steps until the project converged.
Only the standard library is imported on this path, so a repeated `up -d` costs little more
than the agent's own work. Attached `up` and `--watch` go on in compose_attach once the stack
converged.
"""

from __future__ import annotations

import argparse
import os
import types
from pathlib import Path

from reconciler.agent import launcher, plainclient, wire
from reconciler.cli import common, render

# How long `up` waits for the agent to converge when --wait-timeout is not given.
UP_TIMEOUT = 600.0


class StackRefused(common.UserFacingError):
    """The agent refused the stack (a wrong file, an unknown service): nothing was submitted."""


def load_request(args: argparse.Namespace) -> dict:
    """What the agent needs to load the stack as this shell would."""
    return {"cwd": os.getcwd(), "environ": dict(os.environ), "files": list(args.files),
            "project_name": args.project_name, "profiles": list(args.profiles),
            "env_files": list(args.env_files), "project_directory": args.project_directory}


async def ensure_agent(args: argparse.Namespace) -> None:
    """ensure_agent_now, for verbs that run in an event loop."""
    import asyncio

    await asyncio.to_thread(ensure_agent_now, args)


def ensure_agent_now(args: argparse.Namespace) -> None:
    """Start an agent on --root/--run-dir unless one answers there."""
    try:
        launcher.ensure(Path(args.root), Path(args.run_dir),
                        host_netns=getattr(args, "host_netns", None) or None)
    except wire.AgentUnavailable as error:
        raise common.UserFacingError(str(error)) from None


def up(args: argparse.Namespace) -> int:
    if args.force_recreate and args.no_recreate:
        raise common.UserFacingError("--force-recreate and --no-recreate are incompatible")
    if getattr(args, "build", False) and getattr(args, "no_build", False):
        raise common.UserFacingError("--build and --no-build are incompatible")
    ensure_agent_now(args)
    if not getattr(args, "no_build", False):  # what has no image yet, or everything with --build
        from reconciler.cli import build

        build.run(args, services=list(args.services), only_missing=not getattr(args, "build", False))
    progress = render.Progress()
    name, services = submit(args, progress)
    if (args.detach or args.wait) and not args.watch:
        return 0
    from reconciler.cli import compose_attach  # logs, signals, file watching: asyncio & co.

    return compose_attach.attach(args, name, services, progress)


def submit(args: argparse.Namespace, progress: render.Progress) -> tuple[str, list[str]]:
    """Have the agent load and converge the stack, printing a line per resource as it goes;
    the project's name and the services this `up` runs. UserFacingError when the stack is
    wrong (nothing is submitted then) or the agent could not converge it."""
    body = {"load": load_request(args),
            "options": {"services": list(args.services), "scale": list(args.scale),
                        "force_recreate": args.force_recreate, "no_recreate": args.no_recreate,
                        "remove_orphans": args.remove_orphans,
                        **_timeout(args)},
            "wait": bool(args.wait), "timeout": args.wait_timeout or UP_TIMEOUT}
    printed: set[str] = set()
    name, services, result = "", [], None
    pulls = render.PullRows(progress)
    with plainclient.PlainClient(Path(args.run_dir), timeout=None) as agent:
        try:
            for line in agent.stream("POST", "/v1/up", body):
                if line["type"] == "accepted":
                    name, services = line["project"], line["services"]
                    for warning in line["warnings"]:
                        common.print_warning(warning)
                elif line["type"] == "pull":
                    pulls.line(line)
                elif line["type"] == "step":
                    _print_step(name, line, progress, printed)
                elif line["type"] == "result":
                    result = line
        except wire.ApiError as error:
            raise StackRefused(str(error)) from None
        except wire.AgentUnavailable as error:
            raise common.UserFacingError(str(error)) from None
    if result is None:
        raise common.UserFacingError("the agent stopped before the project converged")
    containers = result["containers"]
    if not result["ok"]:
        for view in containers:
            if _failed(view):
                _print_once(progress, printed, f"Container {view['name']}  Error "
                                               f"{_state(view)}")
        raise common.UserFacingError(f"project {name}: {result['error']}")
    for view in containers:
        if args.wait:
            word = "Exited" if view["state"] == "exited" else \
                "Healthy" if view["health"] else "Running"
            progress.line(f"Container {view['name']}  {word}")
        elif f"Container {view['name']}" not in printed and view["state"] == "running":
            progress.line(f"Container {view['name']}  Running")
    progress.close()  # the final block stays; logs or a one-off container's output follow
    return name, services


def _timeout(args: argparse.Namespace) -> dict:
    """`-t`: the grace period of the containers this `up` stops to recreate or scale down.
    Sent only when given: an older agent refuses keys it does not know."""
    timeout = getattr(args, "timeout", None)
    return {} if timeout is None else {"timeout": timeout}


def _print_step(name: str, line: dict, progress: render.Progress, printed: set) -> None:
    event = types.SimpleNamespace(**{k: line.get(k, "") for k in (
        "type", "status", "resource", "action", "message", "containers")})
    for text in render.step_lines(name, event, {}):
        _print_once(progress, printed, text)


def _print_once(progress: render.Progress, printed: set, text: str) -> None:
    if text not in printed:
        progress.line(text)
        printed.add(text)
        printed.add(text.rpartition("  ")[0])


def _failed(view: dict) -> bool:
    return view["health"] == "unhealthy" or (view["state"] == "exited" and bool(view["exit_code"]))


def _state(view: dict) -> str:
    if view["health"] == "unhealthy":
        return "unhealthy"
    return f"exited ({view['exit_code']})" if view["state"] == "exited" else view["state"]


# -- down
def down(args: argparse.Namespace) -> int:
    body: dict = {"volumes": args.volumes, "timeout": args.timeout}
    if args.project_name:
        body["project"] = args.project_name  # the agent checks it
    else:
        body["load"] = load_request(args)
    ensure_agent_now(args)
    progress, name, result = render.Progress(), args.project_name, None
    printed: set[str] = set()
    with plainclient.PlainClient(Path(args.run_dir), timeout=None) as agent:
        try:
            for line in agent.stream("POST", "/v1/down", body):
                if line["type"] == "accepted":
                    name = line["project"]
                elif line["type"] == "step":
                    _print_step(name, line, progress, printed)
                elif line["type"] == "progress":  # Stopping, Stopped, in the stop order
                    _print_once(progress, printed, line["line"])
                elif line["type"] == "result":
                    result = line
        except (wire.ApiError, wire.AgentUnavailable) as error:
            raise common.UserFacingError(str(error)) from None
    if result is None:
        raise common.UserFacingError("the agent stopped before the project was removed")
    if not result["ok"]:
        raise common.UserFacingError(f"project {name}: {result['error']}")
    # What the steps did not show (one-off containers, a project the agent did not know).
    for kind, names in (("Container", result["containers"]), ("Network", result["networks"]),
                        ("Volume", result["volumes"])):
        for removed in names:
            _print_once(progress, printed, f"{kind} {removed}  Removed")
    return 0

