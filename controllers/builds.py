"""Builds of a stack's services: which need one, each a builder request; independent ones at once."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import threading
from collections.abc import Callable
from pathlib import Path

import structlog

from controllers import context
from reconciler.spec import builds as spec_builds, model as spec_model
from runtime import images, names as naming
from runtime.build import builder, snapshot
from runtime.images import manifest

log = structlog.get_logger(__name__)

Emit = Callable[[str], None]
_swept: set[Path] = set()  # state roots whose builds' leftovers this process removed


class BuildRefused(Exception):
    """A `build:` section pcompose cannot build (a remote context, another platform); says which."""


@dataclasses.dataclass(frozen=True)
class Options:
    services: tuple[str, ...] = ()              # none: every service with a build section
    no_cache: bool = False
    pull: bool = False
    build_args: tuple[tuple[str, str], ...] = ()  # --build-arg, over each service's args
    only_missing: bool = False                  # up: build what has no image yet


@dataclasses.dataclass(frozen=True)
class Built:
    service: str
    image: str
    image_id: str = ""
    error: str = ""
    skipped: bool = False


def image_name(project: str, service: str, svc: spec_model.Service) -> str:
    """docker compose v2's rule: `image:` when given, else `<project>-<service>`."""
    return svc.image or naming.image(project, service)


def where(ctx: context.Context) -> snapshot.Where:
    return snapshot.Where(store=ctx.images, tmp_dir=ctx.root / "build" / "tmp",
                          runc_root=ctx.run_dir / "build-runc",
                          cgroup_parent=f"{ctx.cgroup_parent}/.build")  # no project name starts with a dot


def request_for(project: str, stack: spec_model.Stack, service: str, options: Options,
                working_dir: str) -> builder.Request:
    """The builder's request for one service's `build:`; BuildRefused for what cannot be built here."""
    svc = stack.services[service]
    b = svc.build
    assert b is not None
    where_ = f"service {service}: build"
    context_dir = b.context or working_dir
    if spec_builds.is_remote(context_dir):
        raise BuildRefused(f"{where_}.context {context_dir} is remote: only a local directory can be a "
                           "build context here (builds have no network)")
    host = manifest.host()
    for platform in ([svc.platform] if svc.platform else []) + list(b.platforms):
        try:
            wanted = manifest.parse_platform(platform)
        except manifest.ManifestError as err:
            raise BuildRefused(f"{where_}: {err}") from None
        if (wanted.os, wanted.architecture) != (host.os, host.architecture):
            raise BuildRefused(f"{where_}: platform {platform}: only this host's platform ({host}) "
                               "can be built")
    extra = []
    for name, given in sorted(b.additional_contexts.items()):
        value = given or ""
        if value.startswith("service:"):
            other = value.removeprefix("service:")
            if other not in stack.services:
                raise BuildRefused(f"{where_}.additional_contexts.{name}: no such service {other}")
            extra.append((name, "docker-image://" + image_name(project, other, stack.services[other])))
        elif value.startswith("docker-image://"):
            extra.append((name, value))
        elif "://" in value:
            raise BuildRefused(f"{where_}.additional_contexts.{name}: {value}: only local directories, "
                               "images and services")
        else:
            extra.append((name, os.path.join(context_dir, value)))
    secrets = []
    for secret in b.secrets:
        defined = stack.secrets.get(secret.source)
        if defined is None:
            raise BuildRefused(f"{where_}.secrets: no such secret {secret.source}")
        if defined.file:
            secrets.append((secret.target or secret.source, defined.file))
        else:
            raise BuildRefused(f"{where_}.secrets.{secret.source}: only file secrets can be given to a build")
    args = dict(b.args)
    args.update(dict(options.build_args))
    network = b.network or "default"
    if network not in snapshot.NETWORKS:
        raise BuildRefused(f"{where_}.network {network}: expected default, none or host")
    return builder.Request(
        context=Path(context_dir), dockerfile=b.dockerfile or "Dockerfile",
        dockerfile_inline=b.dockerfile_inline,
        args=tuple(sorted((k, str(v)) for k, v in args.items() if v is not None)),
        target=b.target or "", tags=tuple(dict.fromkeys([image_name(project, service, svc), *b.tags])),
        labels=tuple(sorted((k, v or "") for k, v in b.labels.items())),
        no_cache=options.no_cache or bool(b.no_cache),
        pull=options.pull or bool(b.pull), additional_contexts=tuple(extra), secrets=tuple(secrets),
        network=network,
        extra_hosts=tuple((host_name, ip) for host_name, ips in sorted(b.extra_hosts.items()) for ip in ips),
        shm_size=int(b.shm_size or builder.Request.shm_size))


def wanted(ctx: context.Context, project: str, stack: spec_model.Stack, enabled: tuple[str, ...],
           options: Options) -> list[str]:
    """The services to build: those asked for (all with `build:` when none), and with
    only_missing those whose image is not in the store (or whose pull_policy is build)."""
    chosen = list(options.services) or [s for s in enabled if stack.services[s].build is not None]
    out = []
    for name in chosen:
        svc = stack.services.get(name)
        if svc is None or svc.build is None:
            continue
        if options.only_missing and svc.pull_policy != "build":
            try:
                present = images.resolve(ctx.images, image_name(project, name, svc)) is not None
            except images.StoreError:
                present = False
            if present:
                continue
        out.append(name)
    return out


async def build(ctx: context.Context, project: str, stack: spec_model.Stack, services: list[str],
                options: Options, working_dir: str, emit: Emit,
                pull: Callable[[str], None] | None = None) -> list[Built]:
    """Build `services`, each once the services its additional contexts name are built,
    the others at once; a failed one fails those that need it, not the rest."""
    if ctx.root not in _swept:  # once per agent: what a killed one left halfway
        _swept.add(ctx.root)
        for what in await asyncio.to_thread(snapshot.sweep, where(ctx)):
            log.info("build.leftover_removed", what=what)
    requests: dict[str, builder.Request] = {}
    results: dict[str, Built] = {}
    for name in services:
        svc = stack.services[name]
        try:
            requests[name] = request_for(project, stack, name, options, working_dir)
        except BuildRefused as err:
            results[name] = Built(name, image_name(project, name, svc), error=str(err))
    for name in _in_cycles(stack, list(requests)):
        del requests[name]
        results[name] = Built(name, image_name(project, name, stack.services[name]),
                              error=f"service {name}: build.additional_contexts name services "
                                    "that need it in turn")
    counter = itertools.count(1)
    lock = threading.Lock()

    def step() -> int:
        with lock:
            return next(counter)

    tasks: dict[str, asyncio.Task[Built]] = {}

    async def one(name: str) -> Built:
        svc = stack.services[name]
        for need in _needs(svc):
            if need in tasks:
                done = await tasks[need]
                if done.error:
                    return Built(name, image_name(project, name, svc),
                                 error=f"needs {need}, whose build failed")
        request = requests[name]
        try:
            result = await asyncio.to_thread(builder.build, where(ctx), request, emit, pull,
                                             step=step, label=name)
        except builder.BuildError as err:
            log.warning("build.failed", project=project, service=name, error=str(err))
            return Built(name, request.tags[0], error=str(err))
        log.info("build.done", project=project, service=name, image=result.image_id)
        return Built(name, request.tags[0], result.image_id)

    for name in requests:
        tasks[name] = asyncio.ensure_future(one(name))
    for name, task in tasks.items():
        results[name] = await task
    return [results[name] for name in services]


def _needs(svc: spec_model.Service) -> list[str]:
    """The services whose images this build reads (additional_contexts `service:NAME`)."""
    b = svc.build
    return [v.removeprefix("service:") for v in (b.additional_contexts.values() if b else ())
            if v and v.startswith("service:")]


def _in_cycles(stack: spec_model.Stack, names: list[str]) -> list[str]:
    """The builds that wait on each other, directly or not (what a topological sort leaves)."""
    left = set(names)
    while True:
        ready = {n for n in left if not any(m in left for m in _needs(stack.services[n]))}
        if not ready:
            return sorted(left)
        left -= ready
