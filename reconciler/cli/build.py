"""`build`: the agent builds the stack's `build:` services and this prints its progress, docker's way.

Only the standard library is imported here: `up` calls `run` before it submits the stack.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from reconciler.agent import plainclient, wire
from reconciler.cli import common, compose_up, progress, render


class BuildFailed(common.UserFacingError):
    """A build that failed (the agent said why); nothing was tagged for it."""


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("build", help="Build or rebuild services")
    p.add_argument("--no-cache", action="store_true", help="Do not use cache when building the image")
    p.add_argument("--pull", action="store_true", help="Always attempt to pull a newer version of the image")
    p.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="Set build-time variables for services")
    p.add_argument("--progress", dest="build_progress", choices=("auto", "plain", "tty", "json", "quiet"),
                   default=None, help="Type of progress output (tty: docker's block, each running step's "
                   "last output lines under it; plain: every line)")
    p.add_argument("-q", "--quiet", action="store_true", help="Print nothing but errors")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    p.set_defaults(handler=build)


def build(args: argparse.Namespace) -> int:
    if args.quiet or args.build_progress:  # the verb's own --progress over the global one
        progress.configure("quiet" if args.quiet else args.build_progress, args.ansi, args.verb)
    compose_up.ensure_agent_now(args)
    run(args, services=list(args.services), no_cache=args.no_cache, pull=args.pull,
        build_args=list(args.build_arg), only_missing=False)
    return 0


def run(args: argparse.Namespace, *, services: list[str], no_cache: bool = False, pull: bool = False,
        build_args: list[str] | None = None, only_missing: bool = False) -> list[dict]:
    """Have the agent build, its progress on stderr as it comes (render.BuildLines, under this
    run's --progress); the images it made. BuildFailed when a build failed, UserFacingError
    when the stack is wrong."""
    shown = render.Progress(title="Building")
    steps = render.BuildLines(shown)

    body = {"load": compose_up.load_request(args), "services": services, "no_cache": no_cache,
            "pull": pull, "build_args": _build_args(build_args or []), "only_missing": only_missing}
    result = None
    with plainclient.PlainClient(Path(args.run_dir), timeout=None) as agent:
        try:
            for line in agent.stream("POST", "/v1/build", body):
                if line["type"] == "progress":
                    steps.line(line["line"])
                elif line["type"] == "result":
                    result = line
        except (wire.ApiError, wire.AgentUnavailable) as error:
            raise common.UserFacingError(str(error)) from None
        finally:
            if result is None or not result["ok"]:
                steps.close()  # the block as it ended, above the error
    if result is None:
        raise common.UserFacingError("the agent stopped before the build ended")
    if not result["ok"]:
        raise BuildFailed(f"failed to build: {result['error']}")
    for image in result["images"]:
        if image["id"]:
            shown.line(f"Image {image['image']}  Built")
    steps.close()
    return result["images"]


def _build_args(items: list[str]) -> list[str]:
    """--build-arg KEY=VALUE as given; a bare KEY takes its value from this shell (docker's rule),
    or is left out when the shell has none."""
    out = []
    for item in items:
        key, sep, _ = item.partition("=")
        if sep:
            out.append(item)
        elif key in os.environ:
            out.append(f"{key}={os.environ[key]}")
    return out
