"""What `up` does once the stack converged, unless detached: stream every service's logs with
their prefixes, stop the stack gracefully on Ctrl-C, and with `--watch` submit every valid
change of the files the stack came from."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable

from reconciler.cli import common, compose_base, compose_logs, compose_up, render

_recording: list[set[str]] = []
_hooked = False


def attach(args: argparse.Namespace, name: str, services: list[str],
           progress: render.Progress) -> int:
    common.quiet_logs()
    return compose_base.run(_attach(args, name, services, progress)) or 0


async def _attach(args, name: str, services: list[str], progress: render.Progress) -> int:
    ctx = compose_base.context(args)
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    tasks: list[asyncio.Future[object]] = [asyncio.ensure_future(interrupted.wait())]
    if args.watch:
        tasks.append(asyncio.ensure_future(watch(args, progress)))
    if not args.detach:
        progress.close()  # the block stays above the logs
        views = await compose_base.containers(ctx, name, services)
        names = (render.short_name(name, v.name) for v in views)
        print(f"Attaching to {', '.join(names)}", flush=True)
        tasks.append(asyncio.ensure_future(compose_logs.follow_project(
            args, ctx, name, services, tail=None, until_all_exited=not args.watch,
            announce_exits=True)))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # a watcher or follower that failed says why
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)  # a second Ctrl-C stops waiting for the stop
    if interrupted.is_set() and not args.detach:
        print("Gracefully stopping... (press Ctrl+C again to force)", file=sys.stderr, flush=True)
        await stop_all(ctx, name, services, args.timeout, progress)
    return 0


async def stop_all(ctx, name: str, services: list[str], timeout, progress) -> None:
    """Stop (not remove) the stack's containers, as Ctrl-C of docker compose up does."""
    from controllers import services as svc

    views = [v for v in await compose_base.containers(ctx, name, services)
             if v.state in ("running", "paused")]
    progress.begin("Stopping")

    async def stop(view) -> None:
        progress.line(f"Container {view.name}  Stopping")
        await svc.stop_container(ctx, view.id, timeout)
        progress.line(f"Container {view.name}  Stopped")

    await asyncio.gather(*(stop(v) for v in views))


# -- --watch
def _audit(event: str, args: tuple) -> None:
    if _recording and event == "open" and isinstance(args[0], (str, os.PathLike)):
        mode = args[1] or "r"
        if isinstance(mode, str) and "r" in mode and "+" not in mode:
            _recording[-1].add(os.path.abspath(os.fspath(args[0])))


@contextlib.contextmanager
def recording():
    """The paths opened for reading inside the block (an audit hook, which stays installed
    but is idle outside these blocks)."""
    global _hooked
    if not _hooked:
        sys.addaudithook(_audit)
        _hooked = True
    opened: set[str] = set()
    _recording.append(opened)
    try:
        yield opened
    finally:
        _recording.pop()


def _inputs(opened: set[str]) -> set[str]:
    """Of the files opened while loading, those the stack came from (not Python's own)."""
    return {p for p in opened if not p.startswith((sys.prefix, sys.base_prefix, "/proc/",
                                                   "/sys/", "/dev/"))
            and "/site-packages/" not in p and not p.endswith((".py", ".pyc", ".so"))}


def watched(args: argparse.Namespace) -> set[str] | None:
    """The files a reload depends on: every file the loader reads (includes, extends, env
    files), the stack files and .env even before they exist; None if the stack is wrong
    now (the agent says why when it is submitted)."""
    from reconciler import spec

    with recording() as opened:
        try:
            project = spec.load(args.files or None, project_name=args.project_name,
                                profiles=tuple(args.profiles), env_files=tuple(args.env_files),
                                project_directory=args.project_directory)
        except spec.SpecError:
            return None
    return _inputs(opened) | {*project.config_files, os.path.join(project.working_dir, ".env"),
                              *map(os.path.abspath, args.env_files)}


def _only(paths: set[str]) -> Callable[[object, str], bool]:
    """A watchfiles filter that passes the changes of these files only."""
    return lambda _, path: path in paths


async def watch(args: argparse.Namespace, progress: render.Progress) -> None:
    """Reload on every change of a file the stack came from; an invalid file is reported and
    the running stack left as it is, a valid change is submitted."""
    import watchfiles

    paths = watched(args) or set()
    while True:
        dirs = sorted({d for d in map(os.path.dirname, paths) if os.path.isdir(d)})
        ready = False
        # yield_on_timeout: a first (empty) batch tells that the watcher runs.
        async for changes in watchfiles.awatch(
                *dirs, watch_filter=_only(paths), recursive=False,
                debounce=300, rust_timeout=200, yield_on_timeout=True):
            if not ready:
                ready = True
                progress.close()
                shown = ", ".join(sorted(p for p in paths if os.path.exists(p)))
                print(f"Watching {shown}", file=sys.stderr, flush=True)
            if not changes:
                continue
            try:
                try:
                    await asyncio.to_thread(compose_up.submit, args, progress)
                finally:
                    progress.close()  # each submission's block, then what is said of it
            except compose_up.StackRefused as error:
                common.print_error(f"{error} (the running stack is left as it is)")
            except common.UserFacingError as error:
                common.print_error(str(error))
            now = watched(args)
            if now is not None and now != paths:
                paths = now
                break  # watch the directories of the files the stack reads now
        else:
            return
