"""Volumes of projects and of `pcompose volume`: make, remove, list and read them back by their
labels, as docker labels them, and tell which containers use each."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import typing
from pathlib import Path

from controllers import context
from runtime import labels, mounts, volumes

if typing.TYPE_CHECKING:  # the verbs that only list need not import the stack loader
    from reconciler.spec import model as spec_model

PROJECT = labels.PROJECT
KEY = labels.VOLUME
HASH = labels.OWN_CONFIG_HASH
ANONYMOUS = labels.OWN_ANONYMOUS
DOCKER_ANONYMOUS = labels.DOCKER_ANONYMOUS
LOCAL_OPTIONS = ("type", "o", "device")  # what docker's local driver takes


async def ensure(ctx: context.Context, project: str, key: str, name: str,
                 vol: spec_model.Volume, config_hash: str) -> None:
    labels = {**{k: str(v) for k, v in vol.labels.items()},
              PROJECT: project, KEY: key, HASH: config_hash}
    spec = volumes.VolumeSpec(
        name=name, driver=vol.driver or "local",
        driver_opts=tuple(sorted((k, str(v)) for k, v in vol.driver_opts.items())),
        labels=tuple(sorted(labels.items())))
    await asyncio.to_thread(volumes.ensure, ctx.root, spec)


async def require(ctx: context.Context, name: str) -> None:
    if volumes.get(ctx.root, name) is None:
        raise volumes.VolumeError(f"external volume {name!r} not found")


async def remove(ctx: context.Context, name: str) -> None:
    await asyncio.to_thread(volumes.remove, ctx.root, name)


def observe(ctx: context.Context, project: str) -> list[tuple[str, str, str]]:
    """(name, key, config_hash) of the named volumes this agent made for `project`;
    anonymous volumes belong to their containers and are not listed."""
    return [(v.name, v.label(KEY) or "", v.label(HASH) or "")
            for v in volumes.list_all(ctx.root)
            if v.label(PROJECT) == project and not v.label(ANONYMOUS)]


def anonymous_of(ctx: context.Context, project: str) -> list[str]:
    return [v.name for v in volumes.list_all(ctx.root)
            if v.label(PROJECT) == project and v.label(ANONYMOUS)]


# -- what `pcompose volume` does beside the stacks


class VolumeInUse(volumes.VolumeError):
    """A container still mounts the volume: it stays."""


class VolumeNotFound(volumes.VolumeError):
    """No volume has that name."""


def is_anonymous(vol: volumes.Volume) -> bool:
    """Made without a name: by `volume create` with none, or for a container's bare target."""
    return vol.label(DOCKER_ANONYMOUS) is not None or bool(vol.label(ANONYMOUS))


def users(ctx: context.Context) -> dict[str, tuple[str, ...]]:
    """Volume name -> the containers (in any state) whose bundle mounts it, as docker counts
    a volume in use until the container that has it is removed."""
    found: dict[str, set[str]] = {}
    try:
        entries = sorted(os.scandir(ctx.root / "containers"), key=lambda e: e.name)
    except FileNotFoundError:
        return {}
    pinned = None
    for entry in entries:
        config = context.read_json(Path(entry.path) / "config.json")
        for mount in config.get("mounts") or ():
            source = mount.get("source") or ""
            name = _volume_in(ctx, source)
            if name is None and source.startswith(f"{ctx.run_dir}/subpaths/"):
                # A volume's subpath is mounted from a dir of the container's own, bound to
                # the volume's dir: the mount table tells which volume that is.
                pinned = _bind_roots() if pinned is None else pinned
                name = _volume_in(ctx, pinned.get(source, ""), anywhere=True)
            if name is not None:
                found.setdefault(name, set()).add(entry.name)
    return {name: tuple(sorted(cids)) for name, cids in found.items()}


_VOLUME_DIR = re.compile(r"/volumes/([A-Za-z0-9][A-Za-z0-9_.-]*)/" + volumes.DATA + "(?:/|$)")


def _volume_in(ctx: context.Context, path: str, anywhere: bool = False) -> str | None:
    """The volume whose data `path` is in: under this root's volumes dir, or (`anywhere`) in
    a path relative to the root of another filesystem, as the mount table gives bind sources."""
    if not anywhere and not path.startswith(f"{ctx.root}/volumes/"):
        return None
    found = _VOLUME_DIR.search(path[len(str(ctx.root)):] if not anywhere else path)
    if found is None or volumes.get(ctx.root, found.group(1)) is None:
        return None
    return found.group(1)


def _bind_roots() -> dict[str, str]:
    """Mount point -> the dir of its filesystem it shows (mountinfo's fourth field)."""
    out = {}
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields = line.split(" ", 5)
            out[_unescape(fields[4])] = _unescape(fields[3])
    return out


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def create(ctx: context.Context, name: str | None, *, driver: str = "local",
           options: dict[str, str] | None = None,
           labels: dict[str, str] | None = None) -> volumes.Volume:
    """`docker volume create`: without a name, an anonymous volume named by 64 hex digits;
    a name that exists already is that volume, as docker keeps it."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(LOCAL_OPTIONS))
    if unknown:
        raise volumes.VolumeError(f"invalid option key: {unknown[0]!r} "
                                  f"(the local driver takes {', '.join(LOCAL_OPTIONS)})")
    labels = dict(labels or {})
    if not name:
        name = secrets.token_hex(32)
        labels[DOCKER_ANONYMOUS] = ""
    spec = volumes.VolumeSpec(name=name, driver=driver,
                              driver_opts=tuple(sorted(options.items())),
                              labels=tuple(sorted(labels.items())))
    existing = volumes.get(ctx.root, name)
    try:
        return volumes.ensure(ctx.root, spec)
    except volumes.VolumeError:
        if existing is None:  # a new volume whose mount failed is not left half made
            volumes.remove(ctx.root, name)
        raise


def remove_unused(ctx: context.Context, name: str, *, force: bool = False) -> bool:
    """Remove a volume no container mounts; `force` makes a missing one success (False)."""
    if volumes.get(ctx.root, name) is None:
        if force:
            return False
        raise VolumeNotFound(f"get {name}: no such volume")
    using = users(ctx).get(name)
    if using:
        raise VolumeInUse(f"remove {name}: volume is in use - [{', '.join(using)}]")
    return volumes.remove(ctx.root, name)


def size(vol: volumes.Volume) -> int:
    """Bytes of the files in the volume (docker's reclaimed space), links not followed; a
    mounted device's files are not freed by removing the volume, so they count nothing."""
    if mounts.is_mounted(vol.mountpoint):
        return 0
    total = 0
    for folder, _, files in os.walk(vol.mountpoint):
        for file in files:
            try:
                total += os.lstat(os.path.join(folder, file)).st_size
            except OSError:
                continue
    return total


def prune(ctx: context.Context, *, all_named: bool = False,
          keep=lambda vol: False) -> list[tuple[str, int]]:
    """Remove the volumes no container mounts: only anonymous ones unless `all_named` (docker
    23 and later); `keep` spares more. Returns (name, bytes freed) of each."""
    used = users(ctx)
    gone = []
    for vol in volumes.list_all(ctx.root):
        if vol.name in used or keep(vol) or not (all_named or is_anonymous(vol)):
            continue
        freed = size(vol)
        try:
            remove_unused(ctx, vol.name, force=True)
        except volumes.VolumeError:
            continue  # taken into use or busy beside us: it stays
        gone.append((vol.name, freed))
    return gone
