"""What the stack verbs share: which project they act on, the agent's context, its containers."""

from __future__ import annotations

import argparse
import asyncio
import sys


from reconciler.cli import common


def load(args: argparse.Namespace):
    """The stack of the global options (spec.Project); a bad file is one line, exit 1."""
    from reconciler.cli import stack

    return stack.load_project(args)


def project_name(args: argparse.Namespace) -> tuple[str, object | None]:
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


def check_services(project, names: list[str]) -> None:
    if project is None:
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


async def containers(ctx, project: str, services: list[str] = (), *, all: bool = True,
                     oneoff: bool | None = False) -> list:
    """The project's containers (services.ContainerView), of `services` if any are named,
    sorted by name; one-off containers only when asked (oneoff None: both)."""
    from controllers import services as svc

    found = await svc.list_containers(ctx, project=project, all=all)
    return sorted((v for v in found
                   if (not services or v.service in services)
                   and (oneoff is None or v.oneoff == oneoff)
                   and (all or v.state in ("running", "paused"))),
                  key=lambda v: v.name)


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
