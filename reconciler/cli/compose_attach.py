"""`up` and `down`: submit the stack to the agent (or ask it to remove the project), follow its
events as progress lines, then (without -d) the logs; `--watch` resubmits on every valid change."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from reconciler.agent import client, desired, launcher
from reconciler.cli import common, compose_base, compose_cache, compose_logs, render

# How long `up` waits for the agent to converge when --wait-timeout is not given.
UP_TIMEOUT = 600.0
DOWN_TIMEOUT = 300.0


def _scale(args: argparse.Namespace, project) -> dict[str, int]:
    out = {}
    for text in args.scale:
        service, _, number = text.partition("=")
        if not number.isdigit():
            raise common.UserFacingError(f"--scale {text}: expected SERVICE=NUM")
        compose_base.check_services(project, [service])
        out[service] = int(number)
    return out


def submission(args: argparse.Namespace, project) -> dict:
    """The PUT body for this `up`: the normalized stack, where it came from, the flags that
    change decisions and the hashes of the services to run (named ones and their dependencies)."""
    compose_base.check_services(project, args.services)
    wanted = project.with_dependencies(args.services) if args.services \
        else list(project.services_enabled)
    stack = project.stack
    options = {"force_recreate": args.force_recreate, "no_recreate": args.no_recreate,
               "remove_orphans": args.remove_orphans, "scale": _scale(args, project),
               "start_stopped": True}
    return {"stack": stack.model_dump(mode="json", by_alias=True, exclude_none=True),
            "config_files": list(project.config_files), "working_dir": project.working_dir,
            "options": options,
            "hashes": {name: desired.config_hash(stack.services[name], stack, project.environ)
                       for name in wanted}}


def up(args: argparse.Namespace) -> int:
    if args.force_recreate and args.no_recreate:
        raise common.UserFacingError("--force-recreate and --no-recreate are incompatible")
    with compose_cache.recording() as opened:
        project = compose_base.load(args)
    body = submission(args, project)
    compose_cache.store(args, opened, project.name, body, project.warnings)
    return compose_base.run(_up(args, project, body, opened)) or 0


async def ensure_agent(args: argparse.Namespace) -> None:
    try:
        await launcher.ensure_agent(Path(args.root), Path(args.run_dir),
                                    host_netns=compose_base.host_netns(args))
    except client.AgentUnavailable as error:
        raise common.UserFacingError(str(error)) from None


async def _up(args: argparse.Namespace, project, body: dict, opened: set[str]) -> int:
    await ensure_agent(args)
    ctx = compose_base.context(args)
    progress = render.Progress()
    code = await submit(args, ctx, project.name, body, progress)
    if code or (args.detach or args.wait) and not args.watch:
        return code
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    tasks = [asyncio.ensure_future(interrupted.wait())]
    if args.watch:
        tasks.append(asyncio.ensure_future(watch(args, ctx, project, progress, opened)))
    if not args.detach:
        views = await compose_base.containers(ctx, project.name, list(body["hashes"]))
        names = (render.short_name(project.name, v.name) for v in views)
        print(f"Attaching to {', '.join(names)}", flush=True)
        tasks.append(asyncio.ensure_future(compose_logs.follow_project(
            args, ctx, project.name, list(body["hashes"]), tail=None,
            until_all_exited=not args.watch, announce_exits=True)))
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
        await stop_all(ctx, project.name, list(body["hashes"]), args.timeout, progress)
    return 0


async def stop_all(ctx, name: str, services: list[str], timeout, progress) -> None:
    """Stop (not remove) the stack's containers, as Ctrl-C of docker compose up does."""
    from controllers import services as svc

    views = [v for v in await compose_base.containers(ctx, name, services)
             if v.state in ("running", "paused")]

    async def stop(view) -> None:
        progress.line(f"Container {view.name}  Stopping")
        await svc.stop_container(ctx, view.id, timeout)
        progress.line(f"Container {view.name}  Stopped")

    await asyncio.gather(*(stop(v) for v in views))


async def submit(args, ctx, name: str, body: dict, progress: render.Progress) -> int:
    """PUT the desired state, print progress until the agent applied it; 1 if it failed."""
    timeout = args.wait_timeout or UP_TIMEOUT
    printed: set[str] = set()
    began = time.time()
    async with client.AgentClient(Path(args.run_dir), timeout=timeout) as agent:
        follower = asyncio.ensure_future(_print_steps(agent, name, progress, printed))
        try:
            info = await agent.put_project(name, body["stack"],
                                           config_files=body["config_files"],
                                           working_dir=body["working_dir"],
                                           options=body["options"], hashes=body["hashes"])
            await _wait_applied(agent, name, info.generation, began, timeout)
            follower.cancel()
            # The stream may have started after the first steps, or lag behind the end.
            for event in (await agent.project_steps(name)).values():
                if event.time >= began and event.status in ("done", "failed"):
                    _print_once(name, event, progress, printed)
        except client.ApiError as error:
            follower.cancel()
            await _print_failures(agent, name, progress, printed)
            raise common.UserFacingError(f"project {name}: {error}") from None
        except TimeoutError as error:
            follower.cancel()
            await _print_failures(agent, name, progress, printed)
            raise common.UserFacingError(str(error)) from None
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
    views = await compose_base.containers(ctx, name, list(body["hashes"]), all=True)
    for view in views:
        if f"Container {view.name}" not in printed and view.state == "running":
            progress.line(f"Container {view.name}  Running")
    compose_cache.remember_containers(args, [v.name for v in views])
    if args.wait:
        return await _wait_healthy(ctx, name, list(body["hashes"]), progress,
                                   args.wait_timeout or UP_TIMEOUT)
    return 0


async def _wait_applied(agent, name: str, generation: int, began: float,
                        timeout: float) -> None:
    """Until the agent applied `generation`. It gives up (failed), or fails a step and will
    try again later (retrying): `up` then reports, as docker compose does, while the agent
    goes on converging in the background."""
    deadline = time.monotonic() + timeout
    while True:
        project = next((p for p in await agent.projects() if p.name == name), None)
        if project is None or project.applied_generation >= generation:
            return
        if project.generation == generation and project.status == "failed":
            raise client.ApiError(409, project.reason or "the agent gave up on this project")
        if project.generation == generation and project.status == "retrying":
            steps = (await agent.project_steps(name)).values()
            if any(e.status == "failed" and e.time >= began for e in steps):
                raise client.ApiError(409, f"{project.reason} (the agent keeps trying)")
        if time.monotonic() > deadline:
            raise TimeoutError(f"project {name} did not converge within {timeout:g}s "
                               f"(status {project.status}: {project.reason})")
        await asyncio.sleep(0.1)


async def _print_steps(agent, name: str, progress: render.Progress, printed: set) -> None:
    try:
        async for event in agent.events(name):
            _print_once(name, event, progress, printed)
    except client.AgentUnavailable:
        pass


def _print_once(name: str, event, progress: render.Progress, printed: set) -> None:
    """A step's progress lines, each once (the stream and the final steps may both have it)."""
    for line in render.step_lines(name, event, {}):
        if line not in printed:
            progress.line(line)
            printed.add(line)
            printed.add(line.rpartition("  ")[0])


async def _print_failures(agent, name: str, progress: render.Progress, printed: set) -> None:
    """Which resources failed and why, from the agent's last step of each."""
    try:
        steps = await agent.project_steps(name)
    except (client.ApiError, client.AgentUnavailable):
        return
    for event in steps.values():
        if event.status == "failed":
            _print_once(name, event, progress, printed)


async def _wait_healthy(ctx, name: str, services: list[str], progress, timeout: float) -> int:
    """`up --wait`: every container running, and healthy where it has a check."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        views = await compose_base.containers(ctx, name, services)
        # A one-shot job that finished well (exit 0) is done, as docker compose counts it.
        done = [v for v in views if v.state == "exited" and v.exit_code == 0]
        bad = [v for v in views if v not in done
               and (v.state != "running" or v.health == "unhealthy")]
        waiting = [v for v in views if v.health == "starting"]
        if any(v.health == "unhealthy" or v.state == "exited" and v.exit_code for v in bad):
            for v in bad:
                progress.line(f"Container {v.name}  Error {render.status(v, _now())}")
            return 1
        if not bad and not waiting:
            for v in views:
                if v in done:
                    progress.line(f"Container {v.name}  Exited")
                    continue
                progress.line(f"Container {v.name}  {'Healthy' if v.health else 'Running'}")
            return 0
        if asyncio.get_running_loop().time() > deadline:
            raise common.UserFacingError(f"timeout waiting for {', '.join(v.name for v in bad + waiting)}")
        await asyncio.sleep(0.2)


def _now():
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc)


def _watched(args, project, opened: set[str]) -> set[str]:
    """The files a reload depends on: every file the loader read (includes, extends, env
    files), the stack files and .env even before they exist."""
    return compose_cache.inputs(opened) | {
        *project.config_files, os.path.join(project.working_dir, ".env"),
        *map(os.path.abspath, args.env_files)}


async def watch(args, ctx, project, progress: render.Progress, opened: set[str]) -> None:
    """Reload on every change of a file the stack came from; an invalid file is reported and
    the running stack left as it is, a valid change is submitted."""
    import watchfiles

    paths = _watched(args, project, opened)
    while True:
        dirs = sorted({d for d in map(os.path.dirname, paths) if os.path.isdir(d)})
        ready = False
        # yield_on_timeout: a first (empty) batch tells that the watcher runs.
        async for changes in watchfiles.awatch(
                *dirs, watch_filter=lambda _, path: path in paths, recursive=False,
                debounce=300, rust_timeout=200, yield_on_timeout=True):
            if not ready:
                ready = True
                shown = ", ".join(sorted(p for p in paths if os.path.exists(p)))
                print(f"Watching {shown}", file=sys.stderr, flush=True)
            if not changes:
                continue
            with compose_cache.recording() as seen:
                try:
                    reloaded = compose_base.load(args)
                    body = submission(args, reloaded)
                except common.UserFacingError as error:
                    common.print_error(f"{error} (the running stack is left as it is)")
                    continue
            try:
                await submit(args, ctx, reloaded.name, body, progress)
            except common.UserFacingError as error:
                common.print_error(str(error))
            if _watched(args, reloaded, seen) != paths:
                paths = _watched(args, reloaded, seen)
                break  # watch the directories of the files the stack reads now
        else:
            return


# -- down
def down(args: argparse.Namespace) -> int:
    name, _ = compose_base.project_name(args)
    return compose_base.run(_down(args, name)) or 0


async def _down(args: argparse.Namespace, name: str) -> int:
    from controllers import services

    await ensure_agent(args)
    ctx = compose_base.context(args)
    progress = render.Progress()
    views = await compose_base.containers(ctx, name, oneoff=None)
    if args.timeout is not None:
        await asyncio.gather(*(services.stop_container(ctx, v.id, args.timeout) for v in views))
    # One-off containers (`run` without --rm) are not the agent's: they go first, or their
    # endpoints would keep the project's networks in use.
    for view in views:
        if view.oneoff:
            await services.remove_container(ctx, view.id, remove_anonymous=True)
    async with client.AgentClient(Path(args.run_dir), timeout=DOWN_TIMEOUT) as agent:
        try:
            info, stack = await agent.project(name)
        except client.ApiError as error:
            if error.status == 404:
                return await _remove_leftovers(ctx, views, progress)
            raise common.UserFacingError(str(error)) from None
        await agent.delete_project(name, volumes=args.volumes)
        try:
            await agent.wait_applied(name, info.generation + 1, timeout=DOWN_TIMEOUT)
        except (client.ApiError, TimeoutError) as error:
            raise common.UserFacingError(f"project {name}: {error}") from None
    for view in views:
        progress.line(f"Container {view.name}  Removed")
    for key, net in sorted((stack.get("networks") or {}).items()):
        if not net.get("external") and _used(stack, "networks", key):
            progress.line(f"Network {net.get('name') or f'{name}_{key}'}  Removed")
    if args.volumes:
        for key, vol in sorted((stack.get("volumes") or {}).items()):
            if not vol.get("external"):
                progress.line(f"Volume {vol.get('name') or f'{name}_{key}'}  Removed")
    compose_cache.forget(args, name)
    return 0


def _used(stack: dict, kind: str, key: str) -> bool:
    """Networks exist only when a service joins them (desired.from_record)."""
    return any(key in (svc.get(kind) or {}) for svc in (stack.get("services") or {}).values())


async def _remove_leftovers(ctx, views, progress) -> int:
    """A project the agent does not know: its containers (one-off ones, say) still go."""
    from controllers import services

    for view in views:
        await services.remove_container(ctx, view.id, remove_anonymous=True)
        progress.line(f"Container {view.name}  Removed")
    return 0
