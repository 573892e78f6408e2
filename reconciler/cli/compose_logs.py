"""`logs` and the log stream of an attached `up`: conmon's log files, prefixed per container."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import sys

from reconciler.cli import common, compose_base, progress, render
from runtime.oci import logs as oci_logs, timefmt

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_since(text: str | None, now: dt.datetime) -> dt.datetime | None:
    """docker's --since: an RFC 3339 time, a Unix timestamp, or a duration ago (`42m`, `1h30m`)."""
    if not text:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return dt.datetime.fromtimestamp(float(text), dt.UTC)
    parts = _DURATION.findall(text)
    if parts and "".join(n + u for n, u in parts) == text:
        return now - dt.timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
    try:
        return timefmt.parse(text)
    except ValueError:
        raise common.UserFacingError(
            f"--since {text}: expected a time (2006-01-02T15:04:05Z) or a duration (42m)") from None


def parse_tail(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise common.UserFacingError(f"--tail {text}: expected a number or \"all\"") from None
    return None if value < 0 else value


class Printer:
    """Lines of many containers to stdout/stderr with `name  | ` prefixes, names without the
    project as docker compose writes them: each container keeps the colour it got first
    (cyan, yellow, green, ... in the order they come), every prefix padded to the longest
    name; `-t` puts the line's time after the prefix."""

    def __init__(self, names: list[str], *, project: str = "", colour: bool, prefix: bool,
                 timestamps: bool) -> None:
        self.project = project
        self.colour, self.prefix, self.timestamps = colour, prefix, timestamps
        self.colours: dict[str, str] = {}
        self.prefixes: dict[str, str] = {}
        self.add(names)

    def label(self, name: str) -> str:
        return render.short_name(self.project, name)

    def add(self, names) -> None:
        """Containers known now: new ones get the next colour; widths follow the longest."""
        labels = [self.label(n) for n in names]
        new = [label for label in sorted(set(labels)) if label not in self.colours]
        if not new:
            return
        for label in new:
            self.colours[label] = render.COLOURS[len(self.colours) % len(render.COLOURS)]
        width = max(len(label) for label in self.colours)
        self.prefixes = {label: render.log_prefix(label, width, code if self.colour else None)
                         for label, code in self.colours.items()}

    def write(self, name: str, line: oci_logs.LogLine) -> None:
        label = self.label(name)
        if self.prefix and label not in self.prefixes:
            self.add([name])
        head = self.prefixes[label] if self.prefix else ""
        text = f"{timestamp(line.time)} {line.text}" if self.timestamps else line.text
        stream = sys.stderr if line.stream == "stderr" else sys.stdout
        stream.write(head + text + "\n")
        stream.flush()


def timestamp(when: dt.datetime) -> str:
    """docker's log timestamp (RFC 3339, nine fractional digits, UTC): the engine keeps
    nanoseconds, conmon's files microseconds, so the last three digits are zeros."""
    utc = when.astimezone(dt.UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond:06d}000Z"


def logs(args: argparse.Namespace) -> int:
    name, project = compose_base.project_name(args)
    compose_base.check_services(project, args.services, containers=True)
    tail = parse_tail(args.tail)
    since = parse_since(args.since, dt.datetime.now(dt.UTC))
    from reconciler.cli import cluster  # in a cluster: every node's, through the agent

    through = cluster.logs(args, name, tail, since)
    if through is not None:
        return through
    return compose_base.run(_logs(args, name, tail, since, project)) or 0


async def _logs(args, name: str, tail: int | None, since, project=None) -> int:
    ctx = compose_base.context(args)
    # A SERVICE argument may name a container (name, ID or ID prefix), as docker logs takes.
    views = await compose_base.containers(ctx, name, args.services, refs=True, declared=project)
    if args.index is not None:
        views = [v for v in views if v.replica == args.index]
    printer = Printer([v.name for v in views], project=name, colour=_colour(args),
                      prefix=not args.no_log_prefix, timestamps=args.timestamps)
    if args.follow:
        await follow_project(args, ctx, name, args.services, tail=tail, since=since,
                             printer=printer, until_all_exited=True, refs=True,
                             declared=project)
        return 0
    merged = []
    for view in views:
        lines = await asyncio.to_thread(oci_logs.read, ctx.layout.log_path(view.id), tail, since)
        merged += [(line.time, view.name, line) for line in lines]
    for _, cname, line in sorted(merged, key=lambda item: (item[0], item[1])):
        printer.write(cname, line)
    return 0


def _colour(args) -> bool:
    """Coloured prefixes unless --no-color, --ansi never or NO_COLOR; on a terminal, or
    anywhere with --ansi always."""
    return not getattr(args, "no_color", False) and progress.colour_for(
        progress.settings(), progress.is_terminal(sys.stdout))


async def follow_project(args, ctx, name: str, services: list[str], *, tail: int | None,
                         since: dt.datetime | None = None, printer: Printer | None = None,
                         until_all_exited: bool = True, announce_exits: bool = False,
                         poll: float = 0.3, refs: bool = False, declared=None) -> None:
    """Follow every container of the project (new ones join, restarted ones go on where they
    stopped) until none runs any more, or forever when `until_all_exited` is false.
    `announce_exits` (attached `up`): say `name exited with code N` when one stops."""
    printer = printer or Printer([], project=name, colour=_colour(args),
                                 prefix=not getattr(args, "no_log_prefix", False),
                                 timestamps=getattr(args, "timestamps", False))
    running: set[str] = set()
    tasks: dict[str, asyncio.Task] = {}
    last_seen: dict[str, dt.datetime] = {}

    async def follow(view, first: bool) -> None:
        start = since if first else last_seen.get(view.name)
        async for line in oci_logs.follow(ctx.layout.log_path(view.id),
                                          done=lambda: view.name not in running,
                                          tail=tail if first else None, since=start):
            if not first and start is not None and line.time <= start:
                continue
            last_seen[view.name] = line.time
            printer.write(view.name, line)

    announced: set[str] = set()
    first = True
    try:
        while True:
            views = await compose_base.containers(ctx, name, services, refs=refs,
                                                  declared=declared)
            was_running = set(running)
            running.clear()
            running.update(v.name for v in views if v.state in ("running", "paused", "created"))
            announced -= running
            printer.add(v.name for v in views)
            for view in views:
                task = tasks.get(view.name)
                if task is None or (task.done() and view.name in running):
                    tasks[view.name] = asyncio.ensure_future(follow(view, task is None))
            if announce_exits:
                # Also one that exited before the first look: it ran for this `up`.
                for view in views:
                    if view.state == "exited" and view.name not in announced and (
                            first or view.name in was_running):
                        await asyncio.wait([tasks[view.name]], timeout=2.0)  # its last lines
                        sys.stdout.write(
                            f"{printer.label(view.name)} exited with code {view.exit_code}\n")
                        sys.stdout.flush()
                        announced.add(view.name)
            first = False
            if until_all_exited and not running and all(t.done() for t in tasks.values()):
                return
            await asyncio.sleep(poll)
    finally:
        running.clear()
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
