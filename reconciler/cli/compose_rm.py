"""`rm`: remove a stack's stopped containers, as docker compose does, through the agent.

The agent removes them and stops wanting them first: neither a restart policy nor a resync
makes them again, and a later `up` (or `create`, `scale` of their service) does. With -s they
are stopped first, each with its stop signal and grace period; without -f the user confirms
the list.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from reconciler.agent import plainclient, wire
from reconciler.cli import common, compose_create, compose_up, render

# What `rm` takes: containers that do not run (docker's `!State.Running`; paused ones run).
STOPPED = ("exited", "created")
RUNNING = ("running", "paused")  # what -s stops first


def rm(args: argparse.Namespace) -> int:
    compose_up.ensure_agent_now(args)
    progress = render.Progress()
    where = {"project": args.project_name} if args.project_name else \
        {"load": compose_up.load_request(args)}
    name, found = _containers(args, where)
    running = [n for n, state in found if state in RUNNING]
    if args.stop and running:
        compose_create.act(args, {"verb": "stop", "project": name, "containers": running},
                           progress)
        name, found = _containers(args, where)
    names = [n for n, state in found if state in STOPPED]
    if not names:
        print("No stopped containers", file=sys.stderr)
        return 0
    message = f"Going to remove {', '.join(names)}"
    if args.force:
        print(message, flush=True)
    elif not confirm(message):
        return 0
    compose_create.act(args, {"verb": "rm", "services": list(args.services), "project": name,
                              "containers": names, "volumes": args.volumes}, progress)
    return 0


def _containers(args: argparse.Namespace, where: dict) -> tuple[str, list[tuple[str, str]]]:
    """The project's name and its service containers (of the services named), as (name,
    state), by name."""
    with plainclient.PlainClient(Path(args.run_dir)) as agent:
        try:
            answer = agent.call("POST", "/v1/ps", where)
        except (wire.ApiError, wire.AgentUnavailable) as error:
            raise common.UserFacingError(str(error)) from None
    known = answer["services"]
    for service in args.services:
        if known is not None and service not in known:
            raise common.UserFacingError(f"no such service: {service}")
    found = sorted((c["name"], c["state"]) for c in answer["containers"]
                   if not c["oneoff"] and (not args.services or c["service"] in args.services))
    return answer["project"], found


def confirm(message: str) -> bool:
    """docker compose's prompt: `[y/N]` on a terminal, asked again until the answer is one;
    from a pipe or a file, a line is read after the message. No input at all is no."""
    try:
        terminal = os.isatty(sys.stdin.fileno())
    except (OSError, ValueError):  # no stdin at all
        terminal = False
    if not terminal:
        print(message, flush=True)
        return sys.stdin.readline().strip().lower() in ("y", "yes", "true", "1")
    while True:
        sys.stdout.write(f"{message} [y/N]: ")
        sys.stdout.flush()
        line = sys.stdin.readline()
        answer = line.strip().lower()
        if not line or answer in ("", "n", "no"):
            return False
        if answer in ("y", "yes"):
            return True
