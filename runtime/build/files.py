"""COPY and ADD into a build root: resolved inside it, owners and modes as asked, archives unpacked."""

from __future__ import annotations

import bz2
import dataclasses
import fnmatch
import gzip
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

from runtime import safepath


class CopyError(Exception):
    """A COPY or ADD that cannot be done; says which path."""


@dataclasses.dataclass(frozen=True)
class Owner:
    uid: int = 0
    gid: int = 0


Skip = Callable[[str], bool]  # a source's relative path -> leave it out


class Writer:
    """Writes into one mounted build root, resolving every container path inside it (a symlink in
    the image never leads a write out to the host). Parent dirs it makes get the owner and, with
    --chmod, the mode of the copy; dirs that were there keep theirs."""

    def __init__(self, root: Path, owner: Owner, chmod: int | None) -> None:
        self.root, self.owner, self.chmod = root, owner, chmod
        self._dirs: dict[str, Path] = {}
        self._times: list[tuple[Path, os.stat_result]] = []

    def real(self, path: str) -> Path | None:
        """The host path of an existing container path (symlinks resolved in the root), or None."""
        try:
            with safepath.opened(self.root, path) as fd:
                inside = safepath.container_path(self.root, fd)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        return self.root / inside.lstrip("/")

    def ensure_dir(self, path: str, like: os.stat_result | None = None) -> Path:
        """The host path of container dir `path`, made with its missing parents when needed."""
        path = posixpath.normpath("/" + path)
        found = self._dirs.get(path)
        if found is not None:
            return found
        real = self.real(path)
        if real is None:
            parent = self.ensure_dir(posixpath.dirname(path)) if path != "/" else self.root
            real = parent / posixpath.basename(path)
            try:
                os.mkdir(real, 0o755)
            except FileExistsError:
                raise CopyError(f"cannot make directory {path}: something else is there") from None
            self._own(real, like, is_dir=True)
        elif not real.is_dir():
            raise CopyError(f"{path} is not a directory")
        self._dirs[path] = real
        return real

    def _own(self, real: Path, like: os.stat_result | None, is_dir: bool) -> None:
        os.chown(real, self.owner.uid, self.owner.gid, follow_symlinks=False)
        if self.chmod is not None:
            os.chmod(real, self.chmod)
        elif like is not None:
            os.chmod(real, stat.S_IMODE(like.st_mode))
        elif is_dir:
            os.chmod(real, 0o755)

    def copy(self, src: Path, dest: str, skip: Skip | None = None, rel: str = "") -> None:
        """`src` (a file, link or dir: then what is under it) to container path `dest`; `skip`
        leaves out entries by their path under `src`. Call finish() when the copy is done."""
        self.copy_one(src, dest)
        if src.is_dir() and not src.is_symlink():
            for name in sorted(os.listdir(src)):
                child = f"{rel}/{name}" if rel else name
                if skip is not None and skip(child):
                    continue
                self.copy(src / name, posixpath.join(dest, name), skip, child)

    def copy_one(self, src: Path, dest: str) -> None:
        """One entry: a dir is made (its metadata the source's) unless there, a file or link replaces
        what is at `dest`."""
        st = src.lstat()
        if stat.S_ISDIR(st.st_mode):
            real = self.ensure_dir(dest, st)
            self._times.append((real, st))
            return
        parent = self.ensure_dir(posixpath.dirname(posixpath.normpath("/" + dest)))
        target = parent / posixpath.basename(dest)
        if os.path.lexists(target):
            if target.is_dir() and not target.is_symlink():
                raise CopyError(f"cannot overwrite directory {dest} with a file")
            target.unlink()
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), target)
        elif stat.S_ISREG(st.st_mode):
            with open(src, "rb") as fin:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
        else:
            raise CopyError(f"{src.name}: only files, links and directories can be copied")
        if stat.S_ISLNK(st.st_mode):
            os.chown(target, self.owner.uid, self.owner.gid, follow_symlinks=False)
        else:
            self._own(target, st, is_dir=False)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def finish(self) -> None:
        """The copied dirs' times as their sources', now that nothing more is written in them."""
        for real, st in reversed(self._times):
            os.utime(real, ns=(st.st_atime_ns, st.st_mtime_ns))
        self._times.clear()

    def write_file(self, dest: str, data: bytes) -> None:
        """A heredoc source: a new file of `data`, 0644 unless --chmod."""
        parent = self.ensure_dir(posixpath.dirname(posixpath.normpath("/" + dest)))
        target = parent / posixpath.basename(dest)
        if os.path.lexists(target):
            target.unlink()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chown(target, self.owner.uid, self.owner.gid)
        os.chmod(target, self.chmod if self.chmod is not None else 0o644)

    def unpack(self, archive: Path, dest: str) -> None:
        """ADD of a local tar (plain, gzip, bzip2 or xz): its entries under `dest`, with tarfile's
        `tar` filter (no absolute names, no `..`, no link out of the dir)."""
        real = self.ensure_dir(dest)
        try:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(real, filter="tar")
        except (tarfile.TarError, OSError) as err:
            raise CopyError(f"unpacking {archive.name}: {err}") from None


def is_archive(path: Path) -> bool:
    """A tar, maybe compressed: what ADD unpacks instead of copying."""
    if not path.is_file() or path.is_symlink():
        return False
    with open(path, "rb") as f:
        head = f.read(6)
    openers: dict[bytes, Callable[[Path], typing.BinaryIO]] = {
        b"\x1f\x8b": lambda p: typing.cast(typing.BinaryIO, gzip.open(p, "rb")),
        b"BZ": lambda p: typing.cast(typing.BinaryIO, bz2.open(p, "rb")),
        b"\xfd7": lambda p: typing.cast(typing.BinaryIO, lzma.open(p, "rb"))}
    opener = openers.get(head[:2], lambda p: open(p, "rb"))
    try:
        with opener(path) as f:
            block = f.read(512)
    except (OSError, EOFError, lzma.LZMAError):
        return False
    return len(block) == 512 and block[257:262] == b"ustar"


def parse_chmod(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise CopyError(f"--chmod={text}: expected an octal mode such as 755") from None
    if not 0 <= mode <= 0o7777:
        raise CopyError(f"--chmod={text}: expected an octal mode such as 755")
    return mode


def copy_source(writer: Writer, rel: str, real: Path, dest: str, dir_dest: bool, unpack_archives: bool,
                under: Callable[[], Iterator[tuple[str, Path]]] | None) -> None:
    """One source to `dest`: a dir's contents into it, an archive (ADD) unpacked there, a file to
    the path or, when `dest` is a dir, into it. `under` gives a context dir's entries (with
    .dockerignore and --exclude applied); without it the dir is walked whole."""
    if unpack_archives and is_archive(real):
        writer.unpack(real, dest)
    elif real.is_dir() and not real.is_symlink():
        writer.copy_one(real, dest)
        if under is None:
            for name in sorted(os.listdir(real)):
                writer.copy(real / name, posixpath.join(dest, name))
            return
        prefix = "" if rel == "." else rel + "/"
        for sub_rel, sub_path in under():
            writer.copy_one(sub_path, posixpath.join(dest, sub_rel[len(prefix):]))
    elif dir_dest or (writer.real(dest) or Path("/nonexistent")).is_dir():
        writer.copy_one(real, posixpath.join(dest, posixpath.basename(rel)))
    else:
        writer.copy_one(real, dest)


def glob_in(root: Path, pattern: str) -> list[tuple[str, Path]]:
    """A source in a stage's or image's root, resolved inside it; globs as filepath.Match per part."""
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    found: list[str] = [""]
    for part in parts:
        nxt = []
        for base in found:
            if any(c in part for c in "*?["):
                real = Writer(root, Owner(), None).real("/" + base)
                if real is None or not real.is_dir():
                    continue
                nxt += [posixpath.join(base, n) for n in sorted(os.listdir(real))
                        if fnmatch.fnmatchcase(n, part)]
            else:
                nxt.append(posixpath.join(base, part))
        found = nxt
    out = []
    writer = Writer(root, Owner(), None)
    for rel in found:
        real = writer.real("/" + rel)
        if real is None:
            raise CopyError(f"{pattern}: not found in the source stage or image")
        out.append((rel or ".", real))
    return out
