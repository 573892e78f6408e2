"""`build`: the agent builds the stack's `build:` services and this prints its progress, docker's way.

Only the standard library is imported here: `up` calls `run` before it submits the stack.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

from reconciler.agent import plainclient, wire
from reconciler.cli import common, compose_up, progress


class BuildFailed(common.UserFacingError):
    """A build that failed (the agent said why); nothing was tagged for it."""


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("build", help="Build or rebuild services")
    p.add_argument("--no-cache", action="store_true", help="Do not use cache when building the image")
    p.add_argument("--pull", action="store_true", help="Always attempt to pull a newer version of the image")
    p.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="Set build-time variables for services")
    p.add_argument("--progress", dest="build_progress", choices=("auto", "plain", "tty", "json", "quiet"),
                   default=None, help="Type of progress output (plain lines; tty shows the same lines live)")
    p.add_argument("-q", "--quiet", action="store_true", help="Print nothing but errors")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    p.set_defaults(handler=build)


def build(args: argparse.Namespace) -> int:
    compose_up.ensure_agent_now(args)
    run(args, services=list(args.services), no_cache=args.no_cache, pull=args.pull,
        build_args=list(args.build_arg), only_missing=False,
        mode="quiet" if args.quiet else args.build_progress)
    return 0


def run(args: argparse.Namespace, *, services: list[str], no_cache: bool = False, pull: bool = False,
        build_args: list[str] | None = None, only_missing: bool = False,
        mode: str | None = None) -> list[dict]:
    """Have the agent build, its progress lines to stderr as they come (`mode`, else the global
    --progress: plain lines, tty with a RUN's output on one line redrawn, json, quiet); the
    images it made. BuildFailed when a build failed, UserFacingError when the stack is wrong."""
    shown = Lines(mode or progress.settings().progress, progress.is_terminal(sys.stderr))

    body = {"load": compose_up.load_request(args), "services": services, "no_cache": no_cache,
            "pull": pull, "build_args": _build_args(build_args or []), "only_missing": only_missing}
    result = None
    with plainclient.PlainClient(Path(args.run_dir), timeout=None) as agent:
        try:
            for line in agent.stream("POST", "/v1/build", body):
                if line["type"] == "progress":
                    shown.line(line["line"])
                elif line["type"] == "result":
                    result = line
        except wire.ApiError as error:
            raise common.UserFacingError(str(error)) from None
        except wire.AgentUnavailable as error:
            raise common.UserFacingError(str(error)) from None
    shown.close()
    if result is None:
        raise common.UserFacingError("the agent stopped before the build ended")
    if not result["ok"]:
        raise BuildFailed(f"failed to build: {result['error']}")
    for image in result["images"]:
        if image["id"]:
            shown.line(f"Image {image['image']}  Built")
    return result["images"]


class Lines:
    """Build progress as docker prints it: every line (plain), or on a terminal (tty) the steps
    with a RUN's output shown on one line redrawn in place; json: one object per line."""

    _OUTPUT = re.compile(r"^#\d+ \d+\.\d+ ")

    def __init__(self, mode: str, terminal: bool) -> None:
        self.mode = {"auto": "tty" if terminal else "plain"}.get(mode, mode)
        self._pending = False

    def line(self, text: str) -> None:
        if self.mode == "quiet":
            return
        if self.mode == "json":
            sys.stderr.write(json.dumps({"type": "build", "text": text}) + "\n")
        elif self.mode == "tty" and self._OUTPUT.match(text):
            width = shutil.get_terminal_size().columns
            sys.stderr.write("\r\033[K" + text[:max(width - 1, 10)])
            self._pending = True
        else:
            sys.stderr.write(("\r\033[K" if self._pending else "") + text + "\n")
            self._pending = False
        sys.stderr.flush()

    def close(self) -> None:
        if self._pending:
            sys.stderr.write("\r\033[K")
            self._pending = False


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
