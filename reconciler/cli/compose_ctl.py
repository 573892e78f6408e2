"""Verbs that act on a stack's containers: exec, run, stop, start, restart, kill, pause, unpause."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import stat
import sys
import uuid
from pathlib import Path

from reconciler.cli import common, compose_base, render
from runtime import names as naming


def _environment(pairs: list[str]) -> dict[str, str]:
    """`-e K=V`, or `-e K` to pass the caller's value of K (docker's rule)."""
    env = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not key:
            raise common.UserFacingError(f"-e {pair}: expected KEY=VALUE")
        if eq:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return env


def _command(words: list[str]) -> list[str]:
    return words[1:] if words[:1] == ["--"] else list(words)


def _piped() -> bool:
    """Input comes from a pipe or a file: pass it on. Never a terminal without -t or
    /dev/null, so that a command run without input does not wait for any."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def _tty(args) -> bool:
    return not args.no_tty and (args.tty or (sys.stdin.isatty() and sys.stdout.isatty()))


# -- exec
def exec_(args: argparse.Namespace) -> int:
    argv = _command(args.command)
    if not argv:
        raise common.UserFacingError("exec: requires SERVICE and COMMAND")
    name, project = compose_base.project_name(args)
    compose_base.check_services(project, [args.service], containers=True)
    from reconciler.cli import cluster

    if cluster.remote(args):  # -H: the agent finds the node that runs it
        return cluster.exec_(args, name, argv) or 0
    return compose_base.run(_exec(args, name, argv, project))


async def _exec(args, name: str, argv: list[str], project=None) -> int:
    from runtime.oci import exec as oci_exec

    ctx = compose_base.context(args)
    views = await compose_base.containers(ctx, name, [args.service], refs=True,
                                          declared=project)
    if views and all(v.service != args.service for v in views):
        # SERVICE named one container (its name, ID or ID prefix): that one, not --index.
        view = next((v for v in views if v.state == "running"), None)
        if view is None:
            raise common.UserFacingError(f"container {views[0].name} is not running")
    else:
        view = next((v for v in views if v.replica == args.index and v.state == "running"),
                    None)
    if view is None:
        from reconciler.cli import cluster  # in a cluster: on the node that runs it

        elsewhere = not any(v.replica == args.index for v in views)
        code = await asyncio.to_thread(cluster.exec_, args, name, argv) if elsewhere else None
        if code is not None:
            return code
        raise common.UserFacingError(f'service "{args.service}" is not running')
    opts = oci_exec.ExecOptions(user=args.user, env=_environment(args.env), workdir=args.workdir)
    try:
        if args.detach:
            proc = await asyncio.create_subprocess_exec(
                *oci_exec.runc_args(ctx.layout, view.id, argv, opts, terminal=False),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
            return 0 if proc.pid else 1
        if _tty(args):
            terminal = await oci_exec.open_terminal(ctx.layout, view.id, argv, opts)
            return await oci_exec.attach(terminal)
        # Our own stdout and stderr go to runc as they are: output streams as it comes.
        proc = await asyncio.create_subprocess_exec(
            *oci_exec.runc_args(ctx.layout, view.id, argv, opts, terminal=False),
            stdin=None if _piped() else asyncio.subprocess.DEVNULL)
        return await proc.wait()
    except LookupError as error:  # -u names a user the container does not have
        raise common.UserFacingError(str(error)) from None


# -- run
def run(args: argparse.Namespace) -> int:
    project = compose_base.load(args)
    compose_base.check_services(project, [args.service])
    return compose_base.run(_run(args, project))


async def _run(args, project) -> int:
    from controllers import services
    from reconciler.cli import compose_up

    await compose_up.ensure_agent(args)
    await _build_images(args, project)
    await _ensure_dependencies(args, project)
    ctx = compose_base.context(args)
    entrypoint = shlex.split(args.entrypoint) if args.entrypoint is not None else None
    # docker compose's one-off name; the service's own replicas keep theirs.
    cname = args.name or naming.oneoff(project.name, args.service, uuid.uuid4().hex[:12])
    terminal = not args.detach and _tty(args)
    stdin = not args.detach and args.interactive and (terminal or _piped() or os.isatty(0))
    cid = await services.run_container(
        ctx, project.stack, project.name, args.service, name=cname,
        command=_command(args.command) or None, entrypoint=entrypoint,
        environment=_environment(args.env), oneoff=True, tty=terminal, stdin=stdin,
        start=args.detach)
    if args.detach:
        print(cid)
        return 0
    try:
        return await _attached(ctx, cid, terminal, stdin)
    finally:
        if args.rm:
            await services.remove_container(ctx, cid, remove_anonymous=True)


async def _attached(ctx, cid: str, terminal: bool, stdin: bool) -> int:
    """The one-off on the user's terminal or pipes until it ends; its exit code.

    We are a client of the container's conmon, as `podman attach` is, rather than the holder of
    its terminal: if we die, the container runs on under conmon, and `ps`, `logs` and `down`
    still reach it. We attach before it starts, so none of its output is missed.
    """
    from controllers import services
    from runtime.oci import attach, lifecycle

    try:
        session = await attach.connect(ctx.layout.bundle(cid))
    except attach.AttachError as error:
        await services.remove_container(ctx, cid, remove_anonymous=True)  # it never ran
        raise common.UserFacingError(str(error)) from None

    async def start() -> None:
        try:
            await services.start_container(ctx, cid)
        except BaseException:
            await services.remove_container(ctx, cid, remove_anonymous=True)  # it never ran
            raise

    async def exit_code() -> int:
        status = await lifecycle.wait(ctx.layout, cid)
        assert status is not None  # without a timeout it returns once the container exited
        return status.code

    async def signal(name: str) -> None:
        with contextlib.suppress(RuntimeError):  # it has ended meanwhile: nothing to signal
            await lifecycle.kill(ctx.layout, cid, name)

    sys.stdout.flush()
    try:
        with attach.local_terminal(0 if terminal else None, session):
            await start()
            with attach.signals_forwarded(signal):
                return await attach.relay(session, exit_code(), stdin=0 if stdin else None)
    except BrokenPipeError:  # whoever read our output has gone (`run ... | head`), as SIGPIPE
        return 141
    finally:
        session.close()


async def _build_images(args, project) -> None:
    """As docker compose run: the service's image and those of what it depends on are built
    when missing (every one of them with --build), before anything of the project starts."""
    from reconciler.cli import build

    names = [n for n in project.with_dependencies([args.service])
             if project.stack.services[n].build is not None]
    if names:
        await asyncio.to_thread(build.run, args, services=names, only_missing=not args.build)


async def _ensure_dependencies(args, project) -> None:
    """docker compose run starts what the service depends on (and the networks it joins):
    submit the stack with those services when the agent does not know the project yet."""
    from reconciler.agent import client
    from reconciler.cli import compose_up

    async with client.AgentClient(Path(args.run_dir), timeout=compose_up.UP_TIMEOUT) as agent:
        try:
            await agent.project(project.name)
            return
        except client.ApiError as error:
            if error.status != 404:
                raise common.UserFacingError(str(error)) from None
    # The service itself at scale 0: its networks and volumes are made, no container of it.
    ns = argparse.Namespace(**vars(args))
    ns.services, ns.scale = [args.service], [f"{args.service}=0"]
    ns.wait, ns.wait_timeout = False, None
    ns.force_recreate = ns.no_recreate = ns.remove_orphans = False
    await asyncio.to_thread(compose_up.submit, ns, render.Progress())


# -- stop, start, restart, kill, pause, unpause
def _act(args: argparse.Namespace, verb: str, **extra) -> int:
    """The agent acts (ops.VERBS); this prints its progress lines."""
    from reconciler.cli import compose_create, compose_up

    body = {"verb": verb, "services": list(args.services), **extra}
    if args.project_name:
        body["project"] = args.project_name
    else:
        body["load"] = compose_up.load_request(args)
    named = _named_containers(args)
    if named is not None:  # the agent acts on containers by name
        body.update(services=[], containers=named)
    compose_up.ensure_agent_now(args)
    compose_create.act(args, body, render.Progress())
    return 0


def _named_containers(args: argparse.Namespace) -> list[str] | None:
    """When a SERVICE argument names a container instead (its name, ID or ID prefix), the
    names of every container the arguments name; None when they are all services."""
    if not args.services:
        return None
    name, project = compose_base.project_name(args)
    if project is not None and set(args.services) <= compose_base.declared_services(project):
        return None
    views = compose_base.run(compose_base.containers(
        compose_base.context(args), name, list(args.services), refs=True, declared=project))
    if all(v.service in args.services for v in views):
        return None  # services only (with -p, or with no container yet): the agent checks
    return [v.name for v in views]


def stop(args: argparse.Namespace) -> int:
    return _act(args, "stop", timeout=args.timeout)


def start(args: argparse.Namespace) -> int:
    return _act(args, "start")


def restart(args: argparse.Namespace) -> int:
    return _act(args, "restart", timeout=args.timeout)


def kill(args: argparse.Namespace) -> int:
    return _act(args, "kill", signal=args.signal, remove_orphans=args.remove_orphans)


def pause(args: argparse.Namespace) -> int:
    return _act(args, "pause")


def unpause(args: argparse.Namespace) -> int:
    return _act(args, "unpause")
