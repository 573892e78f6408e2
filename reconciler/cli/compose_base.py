"""What the stack verbs share: which project they act on, the agent's context, its containers."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from reconciler.cli import common

if TYPE_CHECKING:  # the loader is imported when a verb loads a stack, not before
    from reconciler import spec


def load(args: argparse.Namespace):
    """The stack of the global options (spec.Project); a bad file is one line, exit 1."""
    from reconciler.cli import stack

    return stack.load_project(args)


def project_name(args: argparse.Namespace) -> tuple[str, spec.Project | None]:
    """docker compose's rule for verbs other than `up`: -p, else the stack file's project.
    Returns the name and the loaded project (None when -p named it)."""
    if args.project_name:
        from reconciler.agent import api

        try:
            api.check_project_name(args.project_name)
        except ValueError as error:
            raise common.UserFacingError(str(error)) from None
        return args.project_name, None
    project = load(args)
    return project.name, project


def declared_services(project) -> set[str]:
    """The services of a loaded project (spec.Project); none when -p named it."""
    return set(project.stack.services) if project is not None else set()


def check_services(project, names: list[str], *, containers: bool = False) -> None:
    """Each of `names` is a service of the loaded project; `containers`: or may name a
    container (checked by containers(), which resolves it)."""
    if project is None or containers:
        return
    for name in names:
        if name not in project.stack.services:
            raise common.UserFacingError(f"no such service: {name}")


def host_netns(args: argparse.Namespace) -> str | None:
    return getattr(args, "host_netns", None) or None


def context(args: argparse.Namespace):
    """The agent's context, for verbs that act on the machine in-process."""
    from controllers import context as ctx_mod

    common.quiet_logs()

    return ctx_mod.make(args.root, args.run_dir, netns=host_netns(args))


async def containers(ctx, project: str, services: Sequence[str] = (), *, all: bool = True,
                     oneoff: bool | None = False, refs: bool = False, declared=None) -> list:
    """The project's containers (services.ContainerView), of `services` if any are named,
    sorted by name; one-off containers only when asked (oneoff None: both).

    `refs` (a verb that takes a container as well as a service): a name that is no service
    of `declared` (the loaded project; None with -p) nor of a container of the project names
    a container: by its name, full ID or unambiguous ID prefix, as docker looks one up."""
    from controllers import services as svc

    found = await svc.list_containers(ctx, project=None if refs else project, all=all)
    mine = [v for v in found if v.project == project]
    named, chosen = _split(mine, found, list(services), declared) if refs else \
        (list(services), [])
    views = {v.id: v for v in mine
             if (not services or v.service in named)
             and (oneoff is None or v.oneoff == oneoff)}
    views.update((v.id, v) for v in chosen)
    return sorted((v for v in views.values() if all or v.state in ("running", "paused")),
                  key=lambda v: v.name)


def _split(mine: list, found: list, refs: list[str], declared) -> tuple[list[str], list]:
    """The services among `refs`, and the containers the others name; a name that is
    neither is an error, as an unknown service always was."""
    from controllers import inspect as inspecting

    services = declared_services(declared) | {v.service for v in mine}
    named, chosen = [], []
    for ref in refs:
        if ref in services:
            named.append(ref)
            continue
        try:
            view = inspecting.resolve(found, ref)
        except inspecting.Ambiguous as error:
            raise common.UserFacingError(f"Error response from daemon: {error}") from None
        if view is None:
            if declared is None:
                named.append(ref)  # -p: a service with no container yet
                continue
            raise common.UserFacingError(f"no such service: {ref}")
        chosen.append(view)
    return named, chosen


# Errors of the layers below that describe what went wrong with the user's containers:
# one line each, no traceback. Looked up only among modules the verb has loaded.
_USER_ERRORS = (("controllers.services", "ServiceError"), ("runtime.oci.runc", "RuncError"),
                ("controllers.networks", "NetworkControllerError"),
                ("runtime.volumes", "VolumeError"), ("runtime.images.store", "StoreError"))


def run(coro):
    """asyncio.run, with Ctrl-C as exit 130 and the runtime's errors as one line."""
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        kinds = tuple(getattr(sys.modules[m], n) for m, n in _USER_ERRORS if m in sys.modules)
        if kinds and isinstance(error, kinds):
            raise common.UserFacingError(str(error).strip()) from None
        raise
