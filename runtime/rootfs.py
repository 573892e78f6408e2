"""Overlay roots for containers: image layers as lowerdirs, a private upper and work dir, one merged mount."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import structlog

from runtime import mounts as mount_table, statefiles
from runtime.images import store as store_mod, unpack

log = structlog.get_logger(__name__)

PAGE = os.sysconf("SC_PAGE_SIZE")
MAX_LOWERS = 500  # overlayfs refuses more
MNT_DETACH = 2
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_libc = ctypes.CDLL(None, use_errno=True)


class RootfsError(Exception):
    """A container root that cannot be prepared; says which container and why."""


@dataclasses.dataclass(frozen=True)
class Mounts:
    """Where a container's root lives, as docker inspect's GraphDriver.Data reports it."""
    lower_dirs: tuple[str, ...]  # top layer first, as overlayfs lists them
    upper_dir: str
    work_dir: str
    merged_dir: str

    def graph_driver_data(self) -> dict[str, str]:
        return {"LowerDir": ":".join(self.lower_dirs), "MergedDir": self.merged_dir,
                "UpperDir": self.upper_dir, "WorkDir": self.work_dir}


def rootfs_dir(root: str | os.PathLike, container_id: str) -> Path:
    if not _ID.match(container_id):
        raise RootfsError(f"invalid container id {container_id!r}")
    # Apart from the bundle (<root>/containers/<id>/): a bundle is rewritten on every create,
    # and a snapshot must never be deleted through its mounted root.
    return Path(root) / "rootfs" / container_id


def plan(root: str | os.PathLike, container_id: str, chain_ids: tuple[str, ...] | list[str]) -> Mounts:
    """Where the container's root will live over these layers (bottom first); touches nothing."""
    base = rootfs_dir(root, container_id)
    layers = Path(root) / "layers"
    lowers = tuple(str(layers / c.split(":", 1)[1] / "diff") for c in reversed(tuple(chain_ids)))
    return Mounts(lowers or (str(base / "empty"),), str(base / "upper"), str(base / "work"),
                  str(base / "merged"))


def prepare(root: str | os.PathLike, container_id: str, chain_ids: tuple[str, ...] | list[str]) -> Mounts:
    """Mount the container's root over the given layers (bottom first); does nothing more if mounted."""
    chain_ids = tuple(chain_ids)
    store = store_mod.Store(root)
    base = rootfs_dir(root, container_id)
    if len(chain_ids) > MAX_LOWERS:
        raise RootfsError(f"container {container_id}: {len(chain_ids)} layers, overlayfs takes {MAX_LOWERS}")
    with store.shared():  # so that garbage collection sees our layers in use before we mount them
        missing = [c for c in chain_ids if not store.has_layer(c)]
        if missing:
            raise RootfsError(f"container {container_id}: layer {missing[0]} is not unpacked")
        mounts = plan(root, container_id, chain_ids)
        recorded = _recorded(base)
        if recorded is not None and recorded != chain_ids and mount_table.is_mounted(mounts.merged_dir):
            raise RootfsError(f"container {container_id}: root is mounted over other layers; remove it first")
        fresh = not (base / "merged").is_dir()
        for d in ("upper", "work", "merged") + (("empty",) if not chain_ids else ()):
            (base / d).mkdir(parents=True, exist_ok=True)
        _write_lowers(base, chain_ids)
    # Nothing is mounted on a dir made just now: the mount table (long with many containers)
    # is read only for a root that was there before.
    if fresh or not mount_table.is_mounted(mounts.merged_dir):
        _mount(store, chain_ids, mounts)
        log.info("rootfs.mounted", container=container_id, layers=len(chain_ids), merged=mounts.merged_dir)
    return mounts


def _mount(store: store_mod.Store, chain_ids: tuple[str, ...], mounts: Mounts) -> None:
    # short names relative to layers/l keep the options under a page (the kernel cuts longer ones)
    if chain_ids:
        cwd = store.layers_dir / "l"
        for c in chain_ids:
            unpack.ensure_link(store, c)
        lower = ":".join(unpack.short_name(c) for c in reversed(chain_ids))
    else:
        cwd, lower = Path(mounts.merged_dir).parent, "empty"
    options = f"lowerdir={lower},upperdir={mounts.upper_dir},workdir={mounts.work_dir}"
    if len(options) >= PAGE:
        _mount_by_fsconfig(mounts)
        return
    # With absolute lower paths that still fit in a page, mount(2) itself: no process per root.
    absolute = options.replace(f"lowerdir={lower}", "lowerdir=" + ":".join(
        str(cwd / name) for name in lower.split(":")), 1)
    if len(absolute) < PAGE:
        if _libc.mount(b"overlay", mounts.merged_dir.encode(), b"overlay", 0, absolute.encode()) != 0:
            raise RootfsError(f"mounting overlay on {mounts.merged_dir} failed: "
                              f"{os.strerror(ctypes.get_errno())}")
        return
    res = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, mounts.merged_dir],
                         cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RootfsError(f"mounting overlay on {mounts.merged_dir} failed: {res.stderr.strip()}")


# The new mount API takes one lower dir per call ("lowerdir+", Linux 6.8), so no page limit applies.
SYS_MOVE_MOUNT, SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 429, 430, 431, 432
FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 1, 6
FSOPEN_CLOEXEC = FSMOUNT_CLOEXEC = 1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100


def _mount_by_fsconfig(mounts: Mounts) -> None:
    fs = _syscall(SYS_FSOPEN, b"overlay", FSOPEN_CLOEXEC, what="fsopen overlay")
    try:
        settings = [(b"lowerdir+", d) for d in mounts.lower_dirs]
        settings += [(b"upperdir", mounts.upper_dir), (b"workdir", mounts.work_dir)]
        for key, value in settings:
            _syscall(SYS_FSCONFIG, fs, FSCONFIG_SET_STRING, key, value.encode(), 0,
                     what=f"overlay option {key.decode()}={value}", fs=fs)
        _syscall(SYS_FSCONFIG, fs, FSCONFIG_CMD_CREATE, None, None, 0, what="creating the overlay", fs=fs)
        mnt = _syscall(SYS_FSMOUNT, fs, FSMOUNT_CLOEXEC, 0, what="fsmount", fs=fs)
        try:
            _syscall(SYS_MOVE_MOUNT, mnt, b"", AT_FDCWD, mounts.merged_dir.encode(), MOVE_MOUNT_F_EMPTY_PATH,
                     what=f"attaching the overlay at {mounts.merged_dir}")
        finally:
            os.close(mnt)
    finally:
        os.close(fs)


def _syscall(number: int, *args, what: str, fs: int | None = None) -> int:
    res = _libc.syscall(ctypes.c_long(number), *[ctypes.c_int(a) if isinstance(a, int) else a for a in args])
    if res < 0:
        err = ctypes.get_errno()
        detail = _fs_messages(fs) if fs is not None else ""
        raise RootfsError(f"{what} failed: {os.strerror(err)}{detail}")
    return res


def _fs_messages(fs: int) -> str:
    """The kernel's own words about a failed fsconfig, read from the fs context."""
    messages = []
    with contextlib.suppress(OSError):
        while True:
            messages.append(os.read(fs, 1024).decode(errors="replace").strip())
    return f" ({'; '.join(messages)})" if messages else ""


def describe(root: str | os.PathLike, container_id: str) -> Mounts | None:
    """The container's root as prepared earlier, or None if it has none."""
    base = rootfs_dir(root, container_id)
    chain_ids = _recorded(base)
    if chain_ids is None:
        return None
    return plan(root, container_id, chain_ids)


def remove(root: str | os.PathLike, container_id: str) -> None:
    """Unmount and delete the container's root; a root that is not there is success."""
    base = rootfs_dir(root, container_id)
    merged = str(base / "merged").encode()
    # Unmount until the kernel says nothing is mounted there (EINVAL) or there is no dir
    # (ENOENT): no read of the mount table, which is long with many containers.
    while True:
        if _libc.umount2(merged, 0) == 0:
            continue  # mounts may be stacked
        err = ctypes.get_errno()
        if err == errno.EBUSY and _libc.umount2(merged, MNT_DETACH) == 0:
            continue
        if err in (errno.EINVAL, errno.ENOENT):
            break
        raise RootfsError(f"unmounting {merged.decode()} failed: {os.strerror(err)}")
    if base.exists():
        shutil.rmtree(base)
        log.info("rootfs.removed", container=container_id)


def _recorded(base: Path) -> tuple[str, ...] | None:
    try:
        return tuple(json.loads((base / store_mod.LOWERS_FILE).read_text()))
    except FileNotFoundError:
        return None


def _write_lowers(base: Path, chain_ids: tuple[str, ...]) -> None:
    statefiles.write(base / store_mod.LOWERS_FILE, json.dumps(list(chain_ids)), mode=0o644)
