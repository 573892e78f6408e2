"""Paths inside a directory taken as their root (a container's rootfs, a volume): resolved as the
kernel resolves them in there, opened by fd, copied and mounted without following a symlink out.

A container's files are its own to change: any path pcompose derives from a container path
(a volume's target in the image, a subpath in a volume, /etc/passwd for `user:`) may meet a
symlink or `..` planted to reach the host. Every open here goes through openat2(2) with
RESOLVE_IN_ROOT (`..` and absolute symlinks stop at the root, as in a chroot) or
RESOLVE_BENEATH (a path that would leave the root fails with `Escape`), or through a walk of
its own that opens one component at a time with O_NOFOLLOW where openat2 is missing. What is
used afterwards is the fd, never the path again, so nothing can be swapped in between.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

IN_ROOT = "in-root"  # resolve as inside a chroot at the root: `..` and `/` stop there
BENEATH = "beneath"  # refuse what would leave the root (absolute symlinks, `..` above it)

Root = str | os.PathLike | int  # a directory, or an open fd of one

_SYS_OPENAT2 = 437
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS = 0x02, 0x04
_RESOLVE_BENEATH, _RESOLVE_IN_ROOT = 0x08, 0x10
_MAX_LINKS = 40  # as the kernel's MAXSYMLINKS
_MS_BIND, _MS_REC = 0x1000, 0x4000
_MNT_DETACH, _UMOUNT_NOFOLLOW = 0x2, 0x8
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_state = {"openat2": True}  # False once the kernel said ENOSYS (or a test wants the walk)


class Escape(OSError):
    """The path would leave its root (scope BENEATH): through `..`, an absolute path or a symlink."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.EXDEV, "leads outside its root", path)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def open_at(root: Root, path: str, flags: int = os.O_PATH, mode: int = 0o644, *,
            scope: str = IN_ROOT, follow: bool = True, symlinks: bool = True) -> int:
    """An fd of `path` resolved inside `root` (O_PATH unless `flags` say otherwise; the caller
    closes it). `follow=False`: a symlink as the last component is opened itself;
    `symlinks=False`: any symlink on the way fails with ELOOP."""
    flags |= os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    path = path or "."
    with _root_fd(root) as rfd:
        if _state["openat2"]:
            resolve = _RESOLVE_NO_MAGICLINKS | (_RESOLVE_IN_ROOT if scope == IN_ROOT else _RESOLVE_BENEATH)
            resolve |= 0 if symlinks else _RESOLVE_NO_SYMLINKS
            try:
                return _openat2(rfd, path, flags, mode if flags & os.O_CREAT else 0, resolve)
            except OSError as err:
                if err.errno != errno.ENOSYS:
                    raise
                _state["openat2"] = False
        return _walk(rfd, path, flags, mode, scope, follow, symlinks)


@contextlib.contextmanager
def opened(root: Root, path: str, flags: int = os.O_PATH, mode: int = 0o644, **kw) -> Iterator[int]:
    """open_at as a context: the fd is closed at the end."""
    fd = open_at(root, path, flags, mode, **kw)
    try:
        yield fd
    finally:
        os.close(fd)


def open_file(root: Root, path: str, *, write: bool = False, create_mode: int | None = None,
              scope: str = IN_ROOT) -> int:
    """A regular file inside `root`, for reading or (`write`) for writing from its start, made
    with `create_mode` when missing. A fifo or device is refused before it is opened for I/O:
    opening one blocks or reaches the host's device."""
    for _ in range(8):  # a file made or removed between the two opens: look again
        try:
            with opened(root, path, scope=scope) as fd:
                return _reopen_regular(fd, path, os.O_WRONLY if write else os.O_RDONLY)
        except FileNotFoundError:
            if create_mode is None:
                raise
        try:
            return open_at(root, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, create_mode, scope=scope)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "a dangling symlink or a file coming and going", path)


def read_bytes(root: Root, path: str, *, limit: int = 16 << 20, scope: str = IN_ROOT) -> bytes:
    """A regular file's content inside `root`; EFBIG beyond `limit` bytes."""
    fd = open_file(root, path, scope=scope)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
    return data


def write_bytes(root: Root, path: str, data: bytes, mode: int = 0o644, *, scope: str = IN_ROOT) -> None:
    """Replace (or make, with `mode`) a regular file's content inside `root`."""
    fd = open_file(root, path, write=True, create_mode=mode, scope=scope)
    with os.fdopen(fd, "wb") as f:
        f.truncate(0)
        f.write(data)


def makedirs(root: Root, path: str, mode: int = 0o755, *, scope: str = IN_ROOT) -> int:
    """Make `path` and its missing parents inside `root` (symlinks on the way resolved inside
    it too); returns an O_PATH fd of the directory."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    with _root_fd(root) as rfd:
        for i in range(len(parts) + 1):
            prefix = "/".join(parts[:i]) or "."
            try:
                fd = open_at(rfd, prefix, os.O_PATH | os.O_DIRECTORY, scope=scope)
            except FileNotFoundError:
                with opened(rfd, "/".join(parts[:i - 1]) or ".", os.O_PATH | os.O_DIRECTORY,
                            scope=scope) as parent, contextlib.suppress(FileExistsError):
                    os.mkdir(parts[i - 1], mode, dir_fd=parent)
                fd = open_at(rfd, prefix, os.O_PATH | os.O_DIRECTORY, scope=scope)
            if i < len(parts):
                os.close(fd)
        return fd


def container_path(root: Root, fd: int) -> str:
    """Where an fd from open_at lies, as a path from `root` (`/` for the root itself)."""
    with _root_fd(root) as rfd:
        base = os.readlink(f"/proc/self/fd/{rfd}")
    found = os.readlink(f"/proc/self/fd/{fd}")
    if found == base:
        return "/"
    if not found.startswith(base.rstrip("/") + "/"):
        raise Escape(found)
    return found[len(base.rstrip("/")):]


def copy_tree(src_dir: int, dst_dir: int) -> None:
    """Copy what the directory `src_dir` holds into `dst_dir` (both fds) as it is, like `cp -a
    src/. dst`: symlinks are copied as symlinks and never followed, devices and fifos made
    anew and never read; owners, modes, times and xattrs kept, also the top directory's. An
    entry `dst_dir` has already is left as it is."""
    src = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=src_dir)
    try:
        dst = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dst_dir)
        try:
            _copy_entries(src, dst)
            _copy_meta(os.fstat(src), dst, src)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def bind(fd: int, target: str | os.PathLike) -> None:
    """Mount what `fd` refers to on `target`, made here as an empty dir or file to match (after
    unmounting whatever was there). The mount goes through /proc/self/fd: what was resolved is
    what gets mounted, whatever its path became meanwhile."""
    target = Path(target)
    release(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        target.mkdir(mode=0o700)
    else:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
    source = f"/proc/self/fd/{fd}".encode()
    if _libc.mount(source, os.fsencode(target), None, ctypes.c_ulong(_MS_BIND | _MS_REC), None) != 0:
        err = ctypes.get_errno()
        release(target)
        raise OSError(err, f"bind mount: {os.strerror(err)}", str(target))


def release(target: str | os.PathLike) -> None:
    """Unmount everything mounted on `target` and remove the empty dir or file; a missing
    target is fine. Never deletes what a mount showed: a dir still holding files stays."""
    raw = os.fsencode(target)
    while _libc.umount2(raw, _MNT_DETACH | _UMOUNT_NOFOLLOW) == 0:
        pass  # mounts may be stacked
    err = ctypes.get_errno()
    if err not in (errno.EINVAL, errno.ENOENT):
        raise OSError(err, f"unmount: {os.strerror(err)}", os.fsdecode(raw))
    try:
        os.rmdir(target)
    except NotADirectoryError:
        os.unlink(target)
    except FileNotFoundError:
        pass


@contextlib.contextmanager
def _root_fd(root: Root) -> Iterator[int]:
    if isinstance(root, int):
        yield root
        return
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _openat2(dirfd: int, path: str, flags: int, mode: int, resolve: int) -> int:
    how = _OpenHow(flags, mode, resolve)
    for _ in range(16):  # EAGAIN: a rename or mount raced the lookup; the kernel asks us to retry
        fd = _libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), os.fsencode(path),
                           ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err != errno.EAGAIN:
            break
    if err == errno.EXDEV and resolve & _RESOLVE_BENEATH:
        raise Escape(path)
    raise OSError(err, os.strerror(err), path)


def _walk(rfd: int, path: str, flags: int, mode: int, scope: str, follow: bool, symlinks: bool) -> int:
    """openat2's resolution done by hand: one component at a time with O_NOFOLLOW, symlinks read
    and resolved by us, `..` taken from our own stack of parents (never the kernel's)."""
    parts = [p for p in path.split("/") if p not in ("", ".")][::-1]  # a stack: next on top
    if path.startswith("/") and scope == BENEATH:
        raise Escape(path)
    dirs = [os.dup(rfd)]
    links = 0
    try:
        while parts:
            name = parts.pop()
            if name == "..":
                if len(dirs) == 1:
                    if scope == BENEATH:
                        raise Escape(path)
                    continue
                os.close(dirs.pop())
                continue
            last = not parts
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirs[-1])
            except FileNotFoundError:
                if last and flags & os.O_CREAT:
                    return os.open(name, flags | os.O_NOFOLLOW, mode, dir_fd=dirs[-1])
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path) from None
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode) and (not last or (follow and not flags & os.O_EXCL)):
                os.close(fd)
                links += 1
                if not symlinks or links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(name, dir_fd=dirs[-1])
                if target.startswith("/"):
                    if scope == BENEATH:
                        raise Escape(path)
                    for extra in dirs[1:]:
                        os.close(extra)
                    del dirs[1:]
                parts += [p for p in target.split("/") if p not in ("", ".")][::-1]
                continue
            if not last:
                if not stat.S_ISDIR(st.st_mode):
                    os.close(fd)
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
                dirs.append(fd)
                continue
            return _finish(fd, st, name, dirs[-1], flags, path)
        return _finish(os.dup(dirs[-1]), os.fstat(dirs[-1]), ".", dirs[-1], flags, path)
    finally:
        for d in dirs:
            os.close(d)


def _finish(fd: int, st: os.stat_result, name: str, parent: int, flags: int, path: str) -> int:
    """The last component, found as an O_PATH fd: checked against `flags` and reopened with them."""
    if flags & os.O_CREAT and flags & os.O_EXCL:
        os.close(fd)
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
    if flags & os.O_DIRECTORY and not stat.S_ISDIR(st.st_mode):
        os.close(fd)
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
    if flags & os.O_PATH:
        return fd
    try:
        if stat.S_ISLNK(st.st_mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)  # as O_NOFOLLOW says
        return os.open(f"/proc/self/fd/{fd}", flags & ~(os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW))
    finally:
        os.close(fd)


def _reopen_regular(fd: int, path: str, flags: int) -> int:
    """The file behind an O_PATH fd opened for I/O, once it is known to be a regular file."""
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file", path)
    return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC)


def _copy_entries(src: int, dst: int) -> None:
    with os.scandir(src) as it:
        names = sorted(entry.name for entry in it)
    for name in names:
        st = os.stat(name, dir_fd=src, follow_symlinks=False)
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFDIR:
            _copy_dir(name, st, src, dst)
        elif kind == stat.S_IFREG:
            _copy_file(name, src, dst)
        elif kind == stat.S_IFLNK:
            with contextlib.suppress(FileExistsError):
                os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
                os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
                os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO):
            with contextlib.suppress(FileExistsError):
                os.mknod(name, kind | 0o600, st.st_rdev, dir_fd=dst)
                node = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dst)
                try:
                    _copy_meta(st, node)
                finally:
                    os.close(node)
        # sockets are not copied: a socket file means nothing without its listener


def _copy_dir(name: str, st: os.stat_result, src: int, dst: int) -> None:
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=dst)
    try:
        s = os.open(name, _DIR, dir_fd=src)
    except OSError:
        return  # changed under us into something else: not ours to follow
    try:
        try:
            d = os.open(name, _DIR, dir_fd=dst)
        except OSError:
            return  # the destination has a non-dir (or a symlink) there: left as it is
        try:
            _copy_entries(s, d)
            _copy_meta(os.fstat(s), d, s)
        finally:
            os.close(d)
    finally:
        os.close(s)


def _copy_file(name: str, src: int, dst: int) -> None:
    try:
        s = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=src)
    except OSError:
        return
    try:
        st = os.fstat(s)
        if not stat.S_ISREG(st.st_mode):
            return
        try:
            d = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                        0o600, dir_fd=dst)
        except FileExistsError:
            return
        try:
            _copy_data(s, d, st.st_size)
            _copy_meta(st, d, s)
        finally:
            os.close(d)
    finally:
        os.close(s)


def _copy_data(s: int, d: int, size: int) -> None:
    offset = 0
    while True:
        try:
            sent = os.copy_file_range(s, d, max(size - offset, 1 << 20))
        except OSError:
            break  # across filesystems the kernel may refuse: copy by hand from here
        if sent == 0:
            return
        offset += sent
    while chunk := os.pread(s, 1 << 20, offset):
        os.pwrite(d, chunk, offset)
        offset += len(chunk)


def _copy_meta(st: os.stat_result, fd: int, src: int | None = None) -> None:
    """Owner, then mode (a chown drops set-id bits), xattrs (file capabilities after the chown,
    which drops them too), times last. `fd` may be O_PATH: then through its /proc link."""
    path = f"/proc/self/fd/{fd}"
    os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, stat.S_IMODE(st.st_mode))
    if src is not None:
        _copy_xattrs(src, fd)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_xattrs(src: int, dst: int) -> None:
    try:
        names = os.listxattr(src)
    except OSError:
        return
    for key in names:
        if key.startswith("trusted.overlay."):
            continue  # overlayfs' own bookkeeping of the image's layers
        with contextlib.suppress(OSError):
            os.setxattr(dst, key, os.getxattr(src, key))
