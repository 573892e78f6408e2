"""docker cp's runtime side: files between the host and a container, running or stopped, carried
as a tar stream by a child process that works inside the container's root.

A running container's volumes and tmpfs mounts exist only in its mount namespace: the child
joins it (setns on a pidfd of the container's init, which must have the container's root as
its own, so a reused pid leads nowhere) and chroots into the init's root. A stopped container's
files are its merged overlay dir, chrooted into alike; its volumes are not reached. Inside, the
child imports nothing (the container's files could stand in for Python's modules), resolves
paths with safepath as the container would and reads or writes a tar on a pipe; the host side
writes or reads that tar by fds beneath its own dir (tartree says how members land).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import posixpath
import signal
import stat
import sys
import tarfile
from collections.abc import Callable

from runtime import safepath, tartree

_SYS_PIDFD_OPEN, _SYS_PIDFD_SEND_SIGNAL = 434, 424
_CLONE_NEWNS = 0x00020000
_OVERLAYFS = 0x794C7630  # a stopped container's root is its overlay, mounted until it is removed
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class CopyError(Exception):
    """A copy that cannot be done, said as its user reads it."""


@dataclasses.dataclass(frozen=True)
class Container:
    """Where a container's files are: its init while it runs (or is paused, or created), its
    merged overlay dir always (a stopped one's files; a running one's identity)."""

    name: str
    rootfs: str
    pid: int = 0


@dataclasses.dataclass(frozen=True)
class PathInfo:
    """A path as a copy needs to know it: whether it exists (symlinks followed when asked),
    is a dir, names a symlink itself (its target) and whether its parent dir exists."""

    exists: bool
    dir: bool = False
    link: str | None = None
    parent: bool = True


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a copy lands: the existing dir `dir`, under `name` (`.`: the source's contents
    go into `dir` itself)."""

    dir: str
    name: str


def is_contents(path: str) -> bool:
    """docker's `SRC/.`: the dir's contents rather than the dir (`.`, `x/.`, `./`, `/`)."""
    return posixpath.basename(path.rstrip("/") or "/.") == "."


def source_name(path: str) -> str:
    """The name a source is archived under when nothing renames it."""
    return "." if is_contents(path) else posixpath.basename(posixpath.normpath(path))


def place(src: str, src_dir: bool, dest: str, found: PathInfo) -> Placement:
    """docker cp's rules for where SRC lands at DEST (found: DEST, symlinks followed)."""
    bare = dest.rstrip("/") or "/"
    if found.exists and found.dir:
        return Placement(dest, source_name(src))
    if found.exists:
        if src_dir:
            raise CopyError(f"cannot copy a directory to a file: {dest}")
        if dest.endswith("/"):
            raise CopyError(f"not a directory: {dest}")
    elif dest.endswith("/") and not src_dir:
        raise CopyError(f"no such directory: {dest}")
    return Placement(posixpath.dirname(bare) or ".", posixpath.basename(bare))


def host_info(path: str, *, follow: bool) -> PathInfo:
    """A host path (the user's own: followed as the user's shell would)."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return PathInfo(False, parent=os.path.isdir(posixpath.dirname(os.path.abspath(path))))
    link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
    return PathInfo(True, stat.S_ISDIR(st.st_mode), link)


# -- the container's side, each in a child inside its root
def info(ctr: Container, path: str, *, follow: bool) -> PathInfo:
    """A container path as the container resolves it."""
    def work(root: int, fds: int) -> dict:
        return {"info": dataclasses.asdict(_info_in(root, path, follow))}

    return PathInfo(**_result(ctr, *_spawn(ctr, work))["info"])


def archive(ctr: Container, path: str, name: str, out: int, *, follow: bool) -> None:
    """The container's `path` (and what is beneath) as a tar on the fd `out`, its top member
    named `name`. A symlink in the tree is archived as one; `path` itself is followed when
    `follow`."""
    _result(ctr, *_spawn(ctr, _archive_work(ctr, path, name, out, follow)))


def extract(ctr: Container, dest: str, stream: int, *, owner: tuple[int, int] | None) -> list[str]:
    """The tar read from the fd `stream` into the container's dir `dest`, owned by `owner`
    (None: as the archive says). Returns the members skipped."""
    return _result(ctr, *_spawn(ctr, _extract_work(ctr, dest, stream, owner)))["skipped"]


# -- between the host and a container
def copy_out(ctr: Container, path: str, where: Placement, *, follow: bool,
             owner: tuple[int, int] | None) -> list[str]:
    """The container's `path` into the host dir `where.dir` as `where.name`; returns the
    members skipped (device nodes: the host gets none from a container)."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        child = _spawn(ctr, _archive_work(ctr, path, where.name, write_end, follow), close=(read_end,))
    finally:
        os.close(write_end)
    failure, skipped = None, []
    try:
        with os.fdopen(read_end, "rb") as stream:
            dest = os.open(where.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            fds = tartree.proc_fds()
            try:
                skipped = tartree.read(stream, dest, fds, tartree.Landing(owner, host=True))
            finally:
                os.close(fds)
                os.close(dest)
    except Exception as err:  # the child's own word comes first, see _settle
        failure = err
    _settle(ctr, child, failure)
    return skipped


def copy_in(ctr: Container, source: str, where: Placement, *, follow: bool,
            owner: tuple[int, int] | None) -> list[str]:
    """The host's `source` into the container's dir `where.dir` as `where.name`."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        child = _spawn(ctr, _extract_work(ctr, where.dir, read_end, owner), close=(write_end,))
    finally:
        os.close(read_end)
    failure = None
    try:
        with os.fdopen(write_end, "wb") as out:
            entry = os.open(source, os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
            fds = tartree.proc_fds()
            try:
                tartree.write(out, entry, where.name, fds)
            finally:
                os.close(fds)
                os.close(entry)
    except Exception as err:
        failure = err
    return _settle(ctr, child, failure).get("skipped", [])


# -- the child
def _info_in(root: int, path: str, follow: bool) -> PathInfo:
    link = None
    try:
        with safepath.opened(root, path, follow=False) as fd:
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                link = os.readlink("", dir_fd=fd)
                if follow:
                    with safepath.opened(root, path) as target:
                        st = os.fstat(target)
            return PathInfo(True, stat.S_ISDIR(st.st_mode), link)
    except (FileNotFoundError, NotADirectoryError):
        try:
            os.close(safepath.open_at(root, posixpath.dirname(path.rstrip("/")) or "/",
                                      os.O_PATH | os.O_DIRECTORY))
        except (FileNotFoundError, NotADirectoryError):
            return PathInfo(False, link=link, parent=False)
        return PathInfo(False, link=link)


def _archive_work(ctr: Container, path: str, name: str, out: int, follow: bool) -> Callable:
    def work(root: int, fds: int) -> None:
        try:
            entry = safepath.open_at(root, path, follow=follow)
        except (FileNotFoundError, NotADirectoryError):
            raise CopyError(f"No such container:path: {ctr.name}:{path}") from None
        try:
            with os.fdopen(out, "wb", closefd=False) as stream:
                tartree.write(stream, entry, name, fds)
        finally:
            os.close(entry)
    return work


def _extract_work(ctr: Container, dest: str, stream: int, owner: tuple[int, int] | None) -> Callable:
    def work(root: int, fds: int) -> dict:
        try:
            where = safepath.open_at(root, dest, os.O_PATH | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            raise CopyError(f"No such container:path: {ctr.name}:{dest}") from None
        try:
            with os.fdopen(stream, "rb", closefd=False) as source:
                return {"skipped": tartree.read(source, where, fds, tartree.Landing(owner))}
        finally:
            os.close(where)
    return work


def _spawn(ctr: Container, work: Callable[[int, int], dict | None],
           close: tuple[int, ...] = ()) -> tuple[int, int]:
    """Fork a child that enters the container's root and runs `work(root fd, /proc fd dir)`;
    its pid and the read end of the pipe it reports on (one JSON object). `close`: the
    parent's ends of the pipes the child works on (held by the child too, a reader would
    never see the end of its stream)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or the child would write what is buffered a second time
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; reports and ends, never returns
        report = {"ok": False, "error": "the copy failed"}
        try:
            for fd in (status_r, *close):
                os.close(fd)
            fds = tartree.proc_fds()  # this process's, from the host's /proc: opened before
            root = _enter(ctr)
            report = {"ok": True, **(work(root, fds) or {})}
        except BaseException as err:  # everything is reported, nothing raised
            report = _describe(err)
        finally:
            try:
                os.write(status_w, json.dumps(report).encode())
            finally:
                os._exit(0)
    os.close(status_w)
    return pid, status_r


def _enter(ctr: Container) -> int:
    """Into the container's root (and mount namespace while it runs): an fd of that root."""
    if ctr.pid:
        pidfd = _libc.syscall(ctypes.c_long(_SYS_PIDFD_OPEN), ctypes.c_int(ctr.pid), ctypes.c_uint(0))
        if pidfd < 0:
            raise CopyError(f"{ctr.name} is not running")
        root = os.open(f"/proc/{ctr.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        if not _same_file(root, ctr.rootfs) or not _alive(pidfd):
            raise CopyError(f"{ctr.name} is not running")  # its pid is another process's by now
        if _libc.setns(ctypes.c_int(pidfd), ctypes.c_int(_CLONE_NEWNS)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"joining the mount namespace of {ctr.name}: {os.strerror(err)}")
        os.close(pidfd)
    else:
        root = os.open(ctr.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        if tartree.fs_type(root) != _OVERLAYFS:
            raise CopyError(f"the root of the stopped container {ctr.name} is not mounted")
    os.fchdir(root)
    os.chroot(".")
    sys.meta_path.insert(0, _NoImports())
    sys.path_importer_cache.clear()
    return root


class _NoImports:
    """Inside a container's root, a module not loaded yet would be read from the container's
    files: refuse them all (what the child needs is loaded before it enters)."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        raise ImportError(f"no module is imported inside a container's root ({name})")


def _same_file(fd: int, path: str) -> bool:
    here, there = os.fstat(fd), os.stat(path)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _alive(pidfd: int) -> bool:
    return _libc.syscall(ctypes.c_long(_SYS_PIDFD_SEND_SIGNAL), ctypes.c_int(pidfd), ctypes.c_int(0),
                         None, ctypes.c_uint(0)) == 0


def _describe(err: BaseException) -> dict:
    """An error as the child reports it: no traceback (formatting one reads source files,
    which inside the container's root are the container's)."""
    if isinstance(err, (CopyError, tartree.Refused)):
        return {"ok": False, "error": str(err)}
    if isinstance(err, OSError):
        text = err.strerror or str(err)
        return {"ok": False, "error": f"{err.filename}: {text}" if err.filename else text,
                "errno": err.errno}
    if isinstance(err, tarfile.TarError):
        return {"ok": False, "error": f"not a tar stream: {err}"}
    if isinstance(err, KeyboardInterrupt):
        return {"ok": False, "error": "interrupted"}
    return {"ok": False, "error": f"{type(err).__name__}: {err}"}


# -- the parent
def _report(status_r: int, pid: int) -> dict:
    with os.fdopen(status_r, "rb") as status:
        raw = status.read()
    os.waitpid(pid, 0)
    try:
        return json.loads(raw)
    except ValueError:
        return {"ok": False, "error": "the copy's process ended without saying how it went",
                "silent": True}


def _result(ctr: Container, pid: int, status_r: int) -> dict:
    report = _report(status_r, pid)
    if not report["ok"]:
        raise CopyError(report["error"])
    return report


def _settle(ctr: Container, child: tuple[int, int], failure: Exception | None) -> dict:
    """The child's report once the parent's side ended, with `failure` or not. What the parent
    refused comes first; then what the child said went wrong (a closed pipe or a stream cut
    short is what the child's failure looks like from here); then the parent's own failure."""
    pid, status_r = child
    if failure is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # whatever it was doing, its other end is gone
    report = _report(status_r, pid)
    if failure is None:
        if not report["ok"]:
            raise CopyError(report["error"])
        return report
    if isinstance(failure, (tartree.Refused, CopyError)):
        raise CopyError(str(failure))
    if not report["ok"] and not report.get("silent"):
        raise CopyError(report["error"])
    raise CopyError(_describe(failure)["error"])
