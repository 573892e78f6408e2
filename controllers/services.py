"""Containers of services: make, start, stop and remove them, and read them back from the machine.

Each function is safe to repeat. Everything a later process needs is on the machine: runc's
state and the OCI annotations say which project, service and replica a container is, with its
config hash and image; markers beside conmon's files hold what a user did (`stop`) and what
the health checker found.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import structlog

from controllers import context, service_config
from reconciler.spec import model as spec_model
from runtime import images, labels, names as naming, rootfs, safepath, volumes
from runtime.images import registry
from runtime.net import bridge, netns, records, resolvconf
from runtime.oci import lifecycle, model as oci_model, observe, spec as oci_spec

log = structlog.get_logger(__name__)


class ServiceError(Exception):
    """A container of a service cannot be made as the stack asks; the message says why."""


class RegistryUnreachable(ServiceError):
    """The image's registry could not be reached or failed (not: the image does not exist):
    worth trying again later."""


@dataclass(frozen=True)
class ContainerView:
    """A container as `ps` shows it."""

    name: str
    id: str
    project: str
    service: str
    replica: int
    image: str
    command: tuple[str, ...]
    state: str  # created | running | paused | exited
    exit_code: int | None
    health: str
    created: dt.datetime | None
    started: dt.datetime | None
    finished: dt.datetime | None
    pid: int
    ports: tuple[tuple[str, int, int, str], ...]  # (host_ip, published, target, protocol)
    networks: tuple[str, ...]
    oneoff: bool
    image_id: str = ""
    config_hash: str = ""
    oom_killed: bool = False
    labels: tuple[tuple[str, str], ...] = ()  # docker's: the image's, the service's, compose's


def container_labels(annotations) -> tuple[tuple[str, str], ...]:
    """The container's labels among its annotations, sorted: io.pcompose.* are the runtime's
    own notes (identity, cgroup, stop signal), not labels a user or docker compose set."""
    return tuple(sorted((k, v) for k, v in annotations.items() if not k.startswith(labels.OWN_PREFIX)))


def _files_dir(ctx: context.Context, cid: str) -> Path:
    return ctx.run_dir / "files" / cid


def _subpaths_dir(ctx: context.Context, cid: str) -> Path:
    """Where a volume's subpath is bind-mounted for runc to take as the source. Apart from the
    container's own dir and its files, which are deleted whole: a delete must never go
    through a mount into the volume."""
    return ctx.run_dir / "subpaths" / cid


def _file_name(kind: str, key: str) -> str:
    """A secret's or config's host file name; a key that is no plain file name is hashed."""
    plain = key and "/" not in key and "\0" not in key and key not in (".", "..")
    return f"{kind}-{key if plain else hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _write_files(ctx: context.Context, stack: spec_model.Stack, svc: spec_model.Service,
                 cid: str) -> dict[str, str]:
    """Secrets and configs as host files, by their target in the container."""
    out: dict[str, str] = {}
    for use in service_config.file_uses(svc):
        top = (stack.secrets if use.kind == "secret" else stack.configs).get(use.key)
        if top is None:
            raise ServiceError(f"{use.kind} {use.key!r} is not declared in the stack")
        if top.file:
            source = Path(top.file)
            if not source.is_file():
                raise ServiceError(f"{use.kind} {use.key}: file {source} does not exist")
        else:
            content = getattr(top, "content", None)
            if content is None:
                raise ServiceError(f"{use.kind} {use.key}: only file and content sources are "
                                   "applied by pcompose yet")
            folder = _files_dir(ctx, cid)
            folder.mkdir(parents=True, exist_ok=True)
            source = folder / _file_name(use.kind, use.key)
            safepath.write_bytes(folder, source.name, content.encode(), scope=safepath.BENEATH)
        out[use.target] = str(source)
    return out


def _prepare_volumes(ctx: context.Context, project: str, stack: spec_model.Stack,
                     svc: spec_model.Service, cname: str, cid: str,
                     merged: str) -> dict[str, str]:
    """Named volumes exist already (the volumes controller made them); anonymous ones are
    made here. A new, empty volume gets what the image has at its target, as in docker; a
    subpath is mounted as the dir it is now, pinned (see _pin_subpath)."""
    dirs: dict[str, str] = {}
    for use in service_config.volume_uses(project, stack, svc, cname):
        vol = volumes.get(ctx.root, use.name)
        if vol is None:
            marks = ((labels.PROJECT, project), (labels.VOLUME, use.name),
                     (labels.OWN_ANONYMOUS, "true"))
            vol = volumes.ensure(ctx.root, volumes.VolumeSpec(use.name, labels=marks))
        if use.subpath:
            dirs[use.target] = str(_pin_subpath(ctx, cid, vol, use))
            continue  # a subpath must exist, so the volume is not new: nothing to copy
        if use.copy_image_content and volumes.is_empty(vol):
            _copy_image_content(merged, use.target, vol)
        dirs[use.target] = str(vol.mountpoint)
    return dirs


def _pin_subpath(ctx: context.Context, cid: str, vol: volumes.Volume,
                 use: service_config.VolumeUse) -> Path:
    """The subpath resolved beneath the volume's root (a symlink or `..` that leads out of it
    is refused, as docker does) and bind-mounted by its fd onto a dir of the container's own:
    runc mounts that, so a symlink planted later in its place changes nothing."""
    where = f"volume {vol.name}: subpath {use.subpath!r}"
    try:
        fd = safepath.open_at(vol.mountpoint, use.subpath or "", scope=safepath.BENEATH)
    except safepath.Escape:
        raise ServiceError(f"{where} leads outside the volume (through `..` or a symlink)") from None
    except (FileNotFoundError, NotADirectoryError):
        raise ServiceError(f"{where} does not exist in the volume") from None
    except OSError as err:
        raise ServiceError(f"{where}: {err.strerror}") from None
    staging = _subpaths_dir(ctx, cid) / hashlib.sha256(use.target.encode()).hexdigest()[:16]
    try:
        safepath.bind(fd, staging)
    finally:
        os.close(fd)
    return staging


def _copy_image_content(merged: str, target: str, vol: volumes.Volume) -> None:
    """What the image has at `target`, resolved inside its root as the container sees it (an
    image's `/data -> /etc` is the image's /etc, never the host's), copied without following
    a symlink."""
    try:
        src = safepath.open_at(merged, target, os.O_PATH | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return  # nothing there in the image: the volume starts empty
    except OSError as err:
        raise ServiceError(f"volume {vol.name}: the image's {target}: {err.strerror}") from None
    try:
        dst = os.open(vol.mountpoint, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            safepath.copy_tree(src, dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _bind_sources(svc: spec_model.Service) -> None:
    for v in svc.volumes:
        if v.type != "bind":
            continue
        if not v.source:
            raise ServiceError(f"bind mount at {v.target}: no source")
        path = Path(v.source)
        if not path.exists():
            if v.bind is not None and v.bind.create_host_path is False:
                raise ServiceError(f"bind mount source {path} does not exist "
                                   "(create_host_path: false)")
            path.mkdir(parents=True, exist_ok=True)


async def _namespaces(ctx: context.Context, project: str, svc: spec_model.Service) -> dict[str, str]:
    """Paths of the pid/ipc/uts namespaces that `service:x` / `container:x` modes join."""
    out = {}
    for kind in ("pid", "ipc", "uts"):
        mode = getattr(svc, kind) or ""
        if mode.startswith(("service:", "container:")):
            target, name = mode.split(":", 1)
            if target == "service":
                found = await observe.list_containers(ctx.layout, project, name)
                cid = found[0].id if found else naming.container(project, name, 1)
            else:  # a container's name, or its id as docker takes either
                named = await observe.named(ctx.layout, name)
                cid = named.id if named else name
            try:
                out[kind] = await observe.namespace_path(ctx.layout, cid, kind)
            except Exception as err:  # the container to join is not running
                raise ServiceError(f"{kind}: {mode}: {err}") from None
    return out


def _nameservers(ctx: context.Context, cname: str) -> tuple[str, ...]:
    """The resolvers the network runtime chose for the container (its networks' DNS)."""
    resolv = resolvconf.directory(ctx.run_dir, cname) / "resolv.conf"
    servers = []
    if resolv.exists():
        servers = [line.split()[1] for line in resolv.read_text().splitlines()
                   if line.startswith("nameserver ") and len(line.split()) > 1]
    return tuple(servers)


async def run_container(ctx: context.Context, stack: spec_model.Stack, project: str, service: str, *,
                        replica: int = 1, name: str | None = None, config_hash: str = "",
                        command: list[str] | None = None, entrypoint: list[str] | None = None,
                        environment: dict[str, str] | None = None, oneoff: bool = False,
                        tty: bool | None = None, stdin: bool = False, start: bool = True) -> str:
    """Make (and start) one container of `service`; returns its id, new for each container
    made (docker's 64 hex digits); its name is `name` or the service's. `stdin` (or the
    service's `stdin_open`): conmon keeps the process's input open for an attached client
    (`run -i`), so a shell's input does not end at once."""
    svc = stack.services.get(service)
    if svc is None:
        raise ServiceError(f"no such service: {service}")
    cname = name or service_config.container_name(project, service, svc, replica)
    existing = await observe.named(ctx.layout, cname)
    if existing is not None and existing.config_hash != config_hash:
        # Never clean up after a failure here: the name is another container's.
        raise ServiceError(f'the container name "{cname}" is already in use by another '
                           "container; remove it or choose another name")
    # The same container asked for again (a repeated step) is kept, under its id.
    cid = existing.id if existing is not None else oci_model.new_id()
    ref = svc.image or naming.image(project, service)
    try:
        record = await images.ensure(ctx.images, ref, svc.pull_policy or "missing",
                                     progress=ctx.pull_progress(project, ref))
    except registry.RegistryError as err:
        if isinstance(err, (registry.NotFound, registry.Unauthorized)):
            raise ServiceError(f"image {ref}: {err}") from None
        raise RegistryUnreachable(f"image {ref}: {err}") from None
    except Exception as err:
        raise ServiceError(f"image {ref}: {err}") from None
    _bind_sources(svc)
    mounts = await asyncio.to_thread(rootfs.prepare, ctx.root, cid, record.chain_ids)
    try:
        dirs = await asyncio.to_thread(_prepare_volumes, ctx, project, stack, svc, cname, cid,
                                       mounts.merged_dir)
        files = _write_files(ctx, stack, svc, cid)
        network, addresses = await _attach(ctx, project, stack, service, svc, cname, oneoff)
        nameservers = _nameservers(ctx, cname)
        namespaces = await _namespaces(ctx, project, svc)
        image = service_config.image_config(record.config)
        config = service_config.container_config(
            project=project, service=service, svc=svc, replica=replica, cname=cname, cid=cid,
            config_hash=config_hash, image_ref=record.id, image=image, rootfs=mounts.merged_dir,
            volume_dirs=dirs, files=files, network=network, namespaces=namespaces,
            addresses=addresses, nameservers=nameservers, oneoff=oneoff, command=command,
            entrypoint=entrypoint, environment=environment, tty=tty)
        config = dataclasses.replace(_with_labels(config, {labels.OWN_IMAGE_REF: ref}),
                                     stdin_open=stdin or bool(svc.stdin_open))
        health = service_config.healthcheck(svc, tuple(record.config.healthcheck_test))
        await lifecycle.create(ctx.layout, config)
        _write_health_check(ctx, cid, health)
        context.mark_stopped_by_user(ctx, cid, False)
        if start:
            await lifecycle.start(ctx.layout, cid, just_created=existing is None)
    except BaseException:
        # Only what this call began is undone: a container an earlier call made (the same
        # step again) runs on with its network, whatever failed here.
        if existing is None:
            await remove_container(ctx, cid, name=cname)
        raise
    log.info("service.container_created", project=project, service=service, container=cname,
             id=cid)
    return cid


def _with_labels(config, extra: dict[str, str]):
    return dataclasses.replace(config, labels={**config.labels, **extra})


async def _attach(ctx: context.Context, project: str, stack: spec_model.Stack, service: str,
                  svc: spec_model.Service, cname: str, oneoff: bool) -> tuple[str, tuple[str, ...]]:
    mode = service_config.network_mode(svc)
    if mode == "host":
        return (str(ctx.netns) if ctx.netns else "host"), ()
    if mode == "none":
        return "private", ()
    own = netns.path(ctx.run_dir, cname) if mode == "bridge" else None
    wish = service_config.container_net(project=project, stack=stack, service=service, svc=svc,
                                        cname=cname, netns=str(own) if own else None, oneoff=oneoff)
    if mode.startswith("service:"):
        target = mode.split(":", 1)[1]
        found = await observe.list_containers(ctx.layout, project, target)
        if not found:
            raise ServiceError(f"network_mode {mode}: no container of service {target}")
        # The network records know containers by name.
        wish = dataclasses.replace(wish, mode=f"container:{found[0].name}")
    elif mode.startswith("container:"):
        target = mode.split(":", 1)[1]
        if await observe.named(ctx.layout, target) is None:
            by_id = await observe.get(ctx.layout, target)  # docker takes an id as well
            if by_id is not None:
                wish = dataclasses.replace(wish, mode=f"container:{by_id.name}")
    try:
        att = await asyncio.to_thread(bridge.attach, ctx.net_host, wish)
    except bridge.NetworkError as err:
        raise ServiceError(str(err)) from None
    return str(att.container.netns), tuple(e.ipv4 for e in att.endpoints)


def _write_health_check(ctx: context.Context, cname: str, check: dict | None) -> None:
    path = ctx.container_dir(cname) / context.HEALTH
    if check is None:
        path.unlink(missing_ok=True)
        return
    context.write_json(path, {"check": check, "status": "starting", "failing_streak": 0, "log": []})
    context.health_tracked(ctx).add(cname)  # the monitor looks after it from its next tick


async def start_container(ctx: context.Context, cid: str) -> None:
    context.mark_stopped_by_user(ctx, cid, False)
    health = context.health_of(ctx, cid)
    if health:
        context.write_json(ctx.container_dir(cid) / context.HEALTH,
                           {**health, "status": "starting", "failing_streak": 0})
    await lifecycle.start(ctx.layout, cid)


async def stop_container(ctx: context.Context, cid: str, timeout: float | None = None) -> None:
    """Stop as a user does: the restart policy leaves it stopped until `start` or `up`."""
    context.mark_stopped_by_user(ctx, cid, True)
    await lifecycle.stop(ctx.layout, cid, timeout=timeout)


async def remove_container(ctx: context.Context, cid: str, *, name: str | None = None,
                           remove_anonymous: bool = False, stop: bool = False,
                           timeout: float | None = None) -> None:
    """Container (by id), network attachment and anonymous volumes (by name: the name file
    beside the id, else `name`), root and files; anonymous volumes only when asked. `name`
    "": the name is another container's now, its network is left alone.
    `stop`: as docker removes a container, its stop signal first and SIGKILL only after its
    grace period (or `timeout`); without it every process is killed at once, which is right
    for a half-made container rolled back and for what a user removes by force."""
    if name is None:
        name = lifecycle.name_of(ctx.layout, cid)
    anon = []
    if remove_anonymous and name:
        anon = [v.name for v in volumes.list_all(ctx.root)
                if v.label(labels.OWN_ANONYMOUS) and v.name.startswith(naming.anonymous_prefix(name))]
    project = lifecycle.project_of(ctx.layout, cid)
    await lifecycle.remove(ctx.layout, cid, stop=stop, timeout=timeout)
    await asyncio.to_thread(_release, ctx, cid, name, anon)
    if project is not None:
        await asyncio.to_thread(_remove_cgroups, ctx, project)
    log.info("service.container_removed", container=name or cid, id=cid)


def release_network(ctx: context.Context, name: str) -> None:
    """The network namespace, addresses and records of the container called `name`."""
    bridge.detach(ctx.net_host, name, netns.path(ctx.run_dir, name))


def _release(ctx: context.Context, cid: str, name: str, anon: list[str]) -> None:
    """What a removed container held beside runc: network, root, files, anonymous volumes."""
    if name:
        release_network(ctx, name)
    rootfs.remove(ctx.root, cid)
    _unpin_subpaths(ctx, cid)
    shutil.rmtree(_files_dir(ctx, cid), ignore_errors=True)
    shutil.rmtree(ctx.container_dir(cid), ignore_errors=True)
    for name in anon:
        volumes.remove(ctx.root, name)


def _unpin_subpaths(ctx: context.Context, cid: str) -> None:
    """Unmount the container's pinned subpaths and remove their empty dirs (never a delete
    through them: that would delete the volume's data)."""
    folder = _subpaths_dir(ctx, cid)
    if not folder.is_dir():
        return
    for staging in folder.iterdir():
        safepath.release(staging)
    folder.rmdir()


def _remove_cgroups(ctx: context.Context, project: str) -> None:
    """The project's cgroup once its last container is gone, and the agent's own parent
    when no project is left in it (rmdir only: a busy or shared dir stays)."""
    if not lifecycle.remove_project_cgroup(ctx.layout, project):
        return
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        with contextlib.suppress(OSError):
            (hierarchy / ctx.cgroup_parent.strip("/")).rmdir()


def _ports_of(ctx: context.Context) -> dict[str, tuple]:
    out = {}
    for att in records.attachments(ctx.root).values():
        out[att.container.container] = (  # by the container's name
            tuple((p.host_ip, p.published, p.target, p.protocol) for p in att.container.ports),
            tuple(e.network for e in att.endpoints))
    return out


async def list_containers(ctx: context.Context, project: str | None = None,
                          all: bool = True) -> list[ContainerView]:
    """list_now in one hop to a thread; only the running ones unless `all`."""
    views = await asyncio.to_thread(list_now, ctx, project)
    return views if all else [v for v in views if v.state == "running"]


def list_now(ctx: context.Context, project: str | None = None) -> list[ContainerView]:
    """The containers as `ps -a` shows them, sorted by name, blocking: the agent's `ps`
    reads on a thread of its own rather than queueing a hop per container behind a
    reconcile's work on the default pool."""
    found = observe.list_now(ctx.layout, project)
    nets = _ports_of(ctx)
    return sorted((_view(ctx, o, nets.get(o.name, ((), ()))) for o in found),
                  key=lambda v: v.name)


def _view(ctx: context.Context, o: observe.Observed, net: tuple) -> ContainerView:
    lay = ctx.layout
    started = lifecycle.started_at(lay, o.id)
    finished = o.exit.finished_at if o.exit else None
    health = context.health_of(ctx, o.id).get("status", "") if o.status == "running" else ""
    return ContainerView(
        name=o.name, id=o.id, project=o.project, service=o.service, replica=o.replica,
        image=o.annotations.get(labels.OWN_IMAGE_REF, o.image), command=_command(lay, o.id),
        state=o.status, exit_code=o.exit.code if o.exit else None, health=health,
        created=o.created, started=started, finished=finished, pid=o.pid,
        ports=net[0], networks=net[1], oneoff=o.oneoff, image_id=o.image,
        config_hash=o.config_hash,
        oom_killed=bool(o.exit and o.exit.oom_killed), labels=container_labels(o.annotations))


def _command(lay, cid: str) -> tuple[str, ...]:
    doc = context.read_json(lay.bundle(cid) / "config.json")
    args = tuple(doc.get("process", {}).get("args", ()))
    # With `init: true` the init is PID 1; users know the command they wrote, as docker shows it.
    if args[:1] == (oci_spec.INIT_PATH,):
        args = args[2:] if args[1:2] == ("--",) else args[1:]
    return args


async def observed_raw(ctx: context.Context, project: str) -> list[observe.Observed]:
    return await observe.list_containers(ctx.layout, project)

