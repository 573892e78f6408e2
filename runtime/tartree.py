"""A directory tree as a tar stream and a tar stream as a tree, by fds only: what `cp` carries
between the host and a container, where the tree or the stream may be hostile.

Writing never follows a symlink found in the tree: each entry is opened with O_NOFOLLOW from
its parent's fd and archived as what it is. Reading puts every member beneath the destination
dir's fd (openat2 RESOLVE_BENEATH through safepath): a name that is absolute or holds `..`, or
a path through a symlink leading out of the destination, is refused; the last component is
never followed, a file is made anew (O_EXCL) rather than written through what was there.
Files are reopened through a /proc fd dir opened beforehand, never through the path
"/proc/self/fd": inside a container's root, /proc is the container's.
"""

from __future__ import annotations

# bz2, lzma and zlib are loaded here, before a copy enters a container's root: tarfile imports
# its decompressors lazily, and no module may be imported from in there.
import bz2  # noqa: F401
import contextlib
import ctypes
import dataclasses
import errno
import io
import lzma  # noqa: F401
import os
import stat
import tarfile
import zlib  # noqa: F401
from collections.abc import Iterator

from runtime import safepath

MAX_DEPTH = 512  # nested dirs a tree may have: each level holds an fd while it is written
_CHUNK = 1 << 20
# Filesystems whose files are the kernel's views, not content: a tree crossing into one
# (a running container's /proc, /sys) is archived without what is beneath.
_PSEUDO_FS = {0x9FA0, 0x62656572, 0x27E0EB, 0x63677270, 0x1CD1, 0x19800202, 0x64626720,
              0x73636673, 0xCAFE4A11, 0x74726163, 0x42494E4D, 0x6E736673, 0xF97CFF8C}
_SETID = stat.S_ISUID | stat.S_ISGID

_libc = ctypes.CDLL(None, use_errno=True)


class Refused(Exception):
    """A member of a stream that would land outside its destination, or a tree that cannot be
    written as asked; the copy stops there."""


@dataclasses.dataclass(frozen=True)
class Landing:
    """How members land: with the archive's owners or `owner` (uid, gid); on the host
    (`host`), set-user/group-ID bits are dropped and device nodes skipped, so that a
    container's setuid binary or raw disk node never becomes the host's."""

    owner: tuple[int, int] | None = None
    host: bool = False


def proc_fds() -> int:
    """An O_PATH fd of this process's /proc fd dir: open it before entering another root."""
    return os.open("/proc/self/fd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def write(out, entry: int, name: str, fds: int) -> None:
    """Archive `entry` (an O_PATH fd, of a symlink itself if it is one) as `name` and, for a
    dir, everything beneath it, to the binary file `out`."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _Writer(tar, fds).tree(entry, name)


def read(stream, dest: int, fds: int, landing: Landing) -> list[str]:
    """Extract the tar in the binary file `stream` beneath the dir fd `dest`; returns the
    members skipped. A member named `.` is the destination itself and leaves it as it is."""
    reader = _Reader(dest, fds, landing)
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        while (member := tar.next()) is not None:
            reader.member(tar, member)
            # typeshed lacks TarFile.members, the list a stream of many files must not fill.
            tar.members.clear()  # type: ignore[attr-defined]
    reader.finish()
    while stream.read(_CHUNK):
        pass  # the writer's padding: read it, so it does not fail on a closed pipe
    return reader.skipped


class _Writer:
    def __init__(self, tar: tarfile.TarFile, fds: int) -> None:
        self.tar, self.fds = tar, fds

    def tree(self, entry: int, name: str) -> None:
        """Depth first, one listing fd held per level, each child opened when its turn comes
        (a dir of many files must not cost as many fds)."""
        stack: list[tuple[int, str, Iterator[str]]] = []  # (listing fd, archive path, names left)
        try:
            self._push(stack, entry, name)
            while stack:
                listing, path, names = stack[-1]
                child = next(names, None)
                if child is None:
                    os.close(stack.pop()[0])
                    continue
                try:
                    fd = os.open(child, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=listing)
                except FileNotFoundError:
                    continue  # gone meanwhile
                try:
                    if len(stack) > MAX_DEPTH:
                        raise Refused(f"{path}: more than {MAX_DEPTH} nested directories")
                    self._push(stack, fd, child if path == "." else f"{path}/{child}")
                finally:
                    os.close(fd)
        finally:
            for listing, _, _ in stack:
                os.close(listing)

    def _push(self, stack: list, fd: int, path: str) -> None:
        """Archive one entry; a dir's listing goes on the stack."""
        st = os.fstat(fd)
        info = _info(path, st)
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFREG:
            data = os.open(str(fd), os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY, dir_fd=self.fds)
            try:
                again = os.fstat(data)
                if (again.st_dev, again.st_ino) == (st.st_dev, st.st_ino):
                    info.size = st.st_size
                    self.tar.addfile(info, _Exact(data, st.st_size))
            finally:
                os.close(data)
            return
        if kind == stat.S_IFLNK:
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink("", dir_fd=fd)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            info.type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif kind == stat.S_IFIFO:
            info.type = tarfile.FIFOTYPE
        elif kind == stat.S_IFDIR:
            info.type = tarfile.DIRTYPE
        else:
            return  # a socket means nothing without its listener
        self.tar.addfile(info)
        if kind == stat.S_IFDIR and not _pseudo(fd):
            # Listed from the fd looked at: whatever the name holds by now, not followed.
            listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            try:
                with os.scandir(listing) as entries:
                    names = sorted(e.name for e in entries)
            except BaseException:
                os.close(listing)
                raise
            stack.append((listing, path, iter(names)))


def _info(path: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = st.st_mtime
    return info


def fs_type(fd: int) -> int:
    """The magic number of the filesystem `fd` is on (statfs(2)'s f_type); 0 if unknown."""
    buf = ctypes.create_string_buffer(256)  # struct statfs; f_type is its first member
    if _libc.fstatfs(fd, buf) != 0:
        return 0
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def _pseudo(fd: int) -> bool:
    return fs_type(fd) in _PSEUDO_FS


class _Exact(io.RawIOBase):
    """A file's first `size` bytes as tarfile reads them: exactly as many as asked, zeros
    where the file shrank meanwhile (the header already promised the size)."""

    def __init__(self, fd: int, size: int) -> None:
        super().__init__()
        self.fd, self.left = fd, size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        parts, got = [], 0
        while got < n:
            chunk = os.read(self.fd, n - got)
            if not chunk:
                parts.append(bytes(n - got))
                break
            parts.append(chunk)
            got += len(chunk)
        self.left -= n
        return b"".join(parts)


def clean_name(name: str) -> list[str]:
    """A member's name as path components beneath the destination ([] for the destination
    itself); Refused for an absolute name or one holding `..`."""
    if name.startswith("/"):
        raise Refused(f"member {name!r}: an absolute name leads outside the destination")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Refused(f"member {name!r}: `..` leads outside the destination")
    return parts


class _Reader:
    def __init__(self, dest: int, fds: int, landing: Landing) -> None:
        self.dest, self.fds, self.landing = dest, fds, landing
        self.dirs: list[tuple[list[str], float]] = []  # dir times, set once their files are in
        self.skipped: list[str] = []

    def member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = clean_name(m.name)
        if not parts:
            return  # the destination itself: a copy of contents leaves it as it is
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.isfifo() or m.isdev()):
            self.skipped.append(m.name)
            return
        if (m.ischr() or m.isblk()) and self.landing.host:
            self.skipped.append(m.name)
            return
        try:
            parent = self._dir(parts[:-1], create=True, name=m.name)
            try:
                self._place(tar, m, parent, parts)
            finally:
                os.close(parent)
        except OSError as err:  # said by the member's name: the kernel knows only its last part
            raise OSError(err.errno, err.strerror, m.name) from None

    def _place(self, tar: tarfile.TarFile, m: tarfile.TarInfo, parent: int, parts: list[str]) -> None:
        leaf = parts[-1]
        existing = _lstat(leaf, parent)
        if m.isdir():
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                os.unlink(leaf, dir_fd=parent)
            with contextlib.suppress(FileExistsError):
                os.mkdir(leaf, 0o700, dir_fd=parent)
            self._meta(self._open_placed(leaf, parent, m.name, stat.S_IFDIR), m)
            self.dirs.append((parts, m.mtime))
            return
        if existing is not None:
            if stat.S_ISDIR(existing.st_mode):
                raise Refused(f"member {m.name!r}: cannot overwrite a directory with a non-directory")
            os.unlink(leaf, dir_fd=parent)
        try:
            if m.isreg():
                self._file(tar, m, parent, leaf)
            elif m.issym():
                os.symlink(m.linkname, leaf, dir_fd=parent)
                uid, gid = self._owner(m)
                os.chown(leaf, uid, gid, dir_fd=parent, follow_symlinks=False)
                os.utime(leaf, (m.mtime, m.mtime), dir_fd=parent, follow_symlinks=False)
            elif m.islnk():
                self._hardlink(m, parent, leaf)
            else:
                kind = stat.S_IFIFO if m.isfifo() else stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                device = os.makedev(m.devmajor, m.devminor) if m.ischr() or m.isblk() else 0
                os.mknod(leaf, kind | 0o600, device, dir_fd=parent)
                self._meta(self._open_placed(leaf, parent, m.name, kind), m)
        except FileExistsError:
            raise Refused(f"member {m.name!r}: made again beside the copy while it was written") from None

    def _file(self, tar: tarfile.TarFile, m: tarfile.TarInfo, parent: int, leaf: str) -> None:
        fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
        try:
            source = tar.extractfile(m)
            if source is None:
                raise Refused(f"member {m.name!r}: not a regular file")
            while chunk := source.read(_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            uid, gid = self._owner(m)
            os.fchown(fd, uid, gid)  # before the mode: a chown drops set-id bits
            os.fchmod(fd, self._mode(m))
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)

    def _hardlink(self, m: tarfile.TarInfo, parent: int, leaf: str) -> None:
        target = clean_name(m.linkname)
        if not target:
            raise Refused(f"member {m.name!r}: a hard link to the destination itself")
        where = self._dir(target[:-1], create=False, name=m.name)
        try:
            os.link(target[-1], leaf, src_dir_fd=where, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(where)

    def _dir(self, parts: list[str], *, create: bool, name: str) -> int:
        """An O_PATH fd of dest/parts, made (0755, as tar does) where missing when `create`."""
        try:
            try:
                return safepath.open_at(self.dest, "/".join(parts) or ".", os.O_PATH | os.O_DIRECTORY,
                                        scope=safepath.BENEATH)
            except FileNotFoundError:
                if not create:
                    raise
            for i in range(len(parts) + 1):  # level by level from the top, made where missing
                path = "/".join(parts[:i]) or "."
                try:
                    fd = safepath.open_at(self.dest, path, os.O_PATH | os.O_DIRECTORY,
                                          scope=safepath.BENEATH)
                except FileNotFoundError:
                    with safepath.opened(self.dest, "/".join(parts[:i - 1]) or ".",
                                         os.O_PATH | os.O_DIRECTORY, scope=safepath.BENEATH) as up, \
                            contextlib.suppress(FileExistsError):
                        os.mkdir(parts[i - 1], 0o755, dir_fd=up)
                    fd = safepath.open_at(self.dest, path, os.O_PATH | os.O_DIRECTORY,
                                          scope=safepath.BENEATH)
                if i < len(parts):
                    os.close(fd)
            return fd
        except safepath.Escape:
            raise Refused(f"member {name!r}: a symlink on its way leads outside the destination") from None
        except NotADirectoryError:
            raise Refused(f"member {name!r}: a non-directory on its way") from None
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise Refused(f"member {name!r}: too many symlinks on its way") from None
            raise

    def _open_placed(self, leaf: str, parent: int, name: str, kind: int) -> int:
        """The entry just made, by an O_PATH fd that does not follow it; Refused when something
        else took its place meanwhile."""
        fd = os.open(leaf, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        if stat.S_IFMT(os.fstat(fd).st_mode) != kind:
            os.close(fd)
            raise Refused(f"member {name!r}: replaced beside the copy while it was written")
        return fd

    def _meta(self, fd: int, m: tarfile.TarInfo) -> None:
        """Owner then mode of an O_PATH fd, through the /proc fd dir (not a symlink: checked)."""
        try:
            uid, gid = self._owner(m)
            os.chown(str(fd), uid, gid, dir_fd=self.fds)
            os.chmod(str(fd), self._mode(m), dir_fd=self.fds)
            if not m.isdir():
                os.utime(str(fd), (m.mtime, m.mtime), dir_fd=self.fds)
        finally:
            os.close(fd)

    def _owner(self, m: tarfile.TarInfo) -> tuple[int, int]:
        return self.landing.owner if self.landing.owner is not None else (m.uid, m.gid)

    def _mode(self, m: tarfile.TarInfo) -> int:
        mode = m.mode & 0o7777
        return mode & ~_SETID if self.landing.host else mode

    def finish(self) -> None:
        """Dir times last: every file made in a dir changed its mtime."""
        for parts, mtime in sorted(self.dirs, key=lambda d: -len(d[0])):
            try:
                fd = self._dir(parts, create=False, name="/".join(parts))
            except (Refused, FileNotFoundError):
                continue  # changed beside the copy: its times are not ours to set
            try:
                os.utime(str(fd), (mtime, mtime), dir_fd=self.fds)
            finally:
                os.close(fd)


def _lstat(name: str, parent: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None
