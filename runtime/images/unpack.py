"""Layer tar -> layers/<chainid>/diff, once per layer: OCI whiteouts become overlay ones; nothing escapes."""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import dataclasses
import errno
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import IO, BinaryIO, Protocol

import structlog
import zstandard

from runtime.images import store as store_mod

log = structlog.get_logger(__name__)
_libc = ctypes.CDLL(None, use_errno=True)

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
SHORT_LEN = 12  # layers/l/<12 hex>: short lowerdir names keep 300 layers under a page of mount options
CHUNK = 1 << 20
# Creating an inode costs far more than writing a small file: small files and symlinks are made by a few
# threads while the tar is read on. Bigger files are written in line, and queued data is bounded.
WORKERS = 4
INLINE_OVER = 1 << 20
QUEUED_MAX = 64 << 20
PENDING_MAX = 4096
# As Go's archive/tar (docker, containerd): a long name or pax header is read whole into memory, and
# no honest one comes near a megabyte.
HEADER_MAX = 1 << 20
# How far one layer may expand, by default: far beyond any honest image, short of filling a disk
# from a small download. The environment of the process that unpacks (the agent, or the CLI for
# `image load` and `image import`) may lower or raise them.
MAX_SIZE_ENV = "PCOMPOSE_LAYER_MAX_SIZE"
MAX_ENTRIES_ENV = "PCOMPOSE_LAYER_MAX_ENTRIES"
DEFAULT_MAX_SIZE = 64 << 30
DEFAULT_MAX_ENTRIES = 4_000_000


class LayerError(store_mod.StoreError):
    """A layer that cannot be unpacked (corrupt, wrong diff id, unsupported compression)."""


class UnsafeLayer(LayerError):
    """A layer entry that would write outside its layer directory; the whole layer is rejected."""


class LayerTooLarge(LayerError):
    """A layer that expands past the limits (a decompression or sparse-file bomb); nothing of it is kept."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one layer may expand to: bytes of its files (sparse holes counted, as they are written out)
    and of its uncompressed tar, and the number of its entries."""
    max_size: int = DEFAULT_MAX_SIZE
    max_entries: int = DEFAULT_MAX_ENTRIES

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Limits:
        env = os.environ if environ is None else environ
        size, entries = env.get(MAX_SIZE_ENV, "").strip(), env.get(MAX_ENTRIES_ENV, "").strip()
        return cls(parse_size(size, MAX_SIZE_ENV) if size else DEFAULT_MAX_SIZE,
                   _positive(entries, MAX_ENTRIES_ENV) if entries else DEFAULT_MAX_ENTRIES)


_SIZE = re.compile(r"(\d+)\s*([kmgt]?)(i?b)?", re.IGNORECASE)


def parse_size(text: str, what: str) -> int:
    """`512m`, `64g`, `1048576`: binary multiples, as docker's sizes."""
    found = _SIZE.fullmatch(text.strip())
    if not found or int(found[1]) <= 0:
        raise LayerError(f"{what}={text!r}: expected a size such as 512m or 64g")
    return int(found[1]) << (10 * " kmgt".index(found[2].lower() or " "))


def _positive(text: str, what: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise LayerError(f"{what}={text!r}: expected a positive whole number")
    return int(text)


def human_size(size: int) -> str:
    n = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:g} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class TarInfo(tarfile.TarInfo):
    """tarfile's member, refusing a long name or pax header before tarfile reads it whole into memory."""

    _EXTENDED = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                 tarfile.SOLARIS_XHDTYPE)

    def _proc_member(self, tar):
        if self.type in self._EXTENDED and self.size > HEADER_MAX:
            raise LayerTooLarge(f"an extended tar header of {human_size(self.size)} "
                                f"(at most {human_size(HEADER_MAX)})")
        return super()._proc_member(tar)


def short_name(chain_id: str) -> str:
    return chain_id.split(":", 1)[1][:SHORT_LEN]


def ensure_layer(store: store_mod.Store, chain_id: str, diff_id: str, blob: Path,
                 limits: Limits | None = None) -> Path:
    """Unpack `blob` into layers/<chainid>/ unless it is there already; returns the layer dir.

    `limits` (by default from the environment) bounds what the layer may expand to.
    """
    final = store.layer_dir(chain_id)
    if store.has_layer(chain_id):
        ensure_link(store, chain_id)
        return final
    limits = limits or Limits.from_env()
    tmp = Path(tempfile.mkdtemp(dir=store.layers_dir, prefix=".tmp-"))
    try:
        diff = tmp / "diff"
        diff.mkdir(mode=0o755)
        try:
            with open(blob, "rb") as raw:
                got = unpack(_decompressed(raw, blob), diff, limits)
        except OSError as err:
            raise LayerError(f"layer {blob.name[:12]}: {err}") from None
        except LayerTooLarge as err:
            raise LayerTooLarge(f"layer {blob.name[:12]}: {err}") from None
        if got != diff_id:
            raise LayerError(f"layer {blob.name[:12]}: uncompressed content hashes to {got}, "
                             f"the image config says {diff_id}")
        syncfs(tmp)  # the files must be on disk before the marker says they are
        (tmp / "complete").write_text(json.dumps({"chain_id": chain_id, "diff_id": diff_id}))
        try:
            os.rename(tmp, final)
        except OSError as err:
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            # another process unpacked the same layer first; keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log.info("layer.unpacked", chain_id=chain_id, diff_id=diff_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ensure_link(store, chain_id)
    return final


def syncfs(path: Path) -> None:
    """What is written under `path` is on disk (its whole filesystem) when this returns."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            raise OSError(ctypes.get_errno(), f"syncfs {path}")
    finally:
        os.close(fd)


def ensure_link(store: store_mod.Store, chain_id: str) -> None:
    """layers/l/<short> -> ../<chainid>/diff: the name a mount uses for this layer."""
    link = store.layers_dir / "l" / short_name(chain_id)
    target = f"../{chain_id.split(':', 1)[1]}/diff"
    try:
        os.symlink(target, link)
    except FileExistsError:
        if os.readlink(link) != target:
            raise LayerError(f"short layer name {link.name} is taken by another layer") from None


def remove_layer(store: store_mod.Store, chain_id: str) -> None:
    """Remove a layer dir and its short link; a missing one is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(store.layers_dir / "l" / short_name(chain_id))
    final = store.layer_dir(chain_id)
    if final.exists():
        # rename first so that a half-removed layer never looks complete
        doomed = Path(tempfile.mkdtemp(dir=store.layers_dir, prefix=".tmp-"))
        os.rename(final, doomed / "x")
        shutil.rmtree(doomed, ignore_errors=True)


class Readable(Protocol):
    """What a layer tar is read from: a file, or a decompressing stream over one."""

    def read(self, size: int = -1, /) -> bytes: ...


def _decompressed(raw: BinaryIO, blob: Path) -> Readable:
    magic = raw.read(4)
    raw.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return raw


class _HashingReader:
    """The uncompressed tar as it is read: hashed for the diff id, and counted against the size limit."""

    def __init__(self, inner: Readable, max_size: int) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()
        self.max_size = max_size
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n if 0 <= n <= CHUNK else CHUNK)
        self.size += len(data)
        if self.size > self.max_size:
            raise LayerTooLarge(
                f"its tar expands past {human_size(self.max_size)} (the limit, {MAX_SIZE_ENV})")
        self.hash.update(data)
        return data

    def drain(self) -> str:
        while self.read(CHUNK):
            pass
        return "sha256:" + self.hash.hexdigest()


def unpack(stream: Readable, dest: Path, limits: Limits | None = None) -> str:
    """Extract a layer tar stream into `dest`; returns its diff id (sha256 of the tar)."""
    limits = limits or Limits()
    reader = _HashingReader(stream, limits.max_size)
    extractor = _Extractor(dest, limits)
    try:
        try:
            # A stream mode only reads; typeshed asks every fileobj for write, seek and tell.
            with tarfile.open(fileobj=reader, mode="r|", tarinfo=TarInfo) as tar:  # type: ignore[call-overload]
                for member in tar:
                    extractor.add(tar, member)
            extractor.finish()
            return reader.drain()
        except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError,
                OSError) as err:
            if isinstance(err, OSError) and err.errno is not None:
                raise
            raise LayerError(f"layer is not a valid tar stream: {err}") from None
    finally:
        extractor.close()


def clean_name(name: str) -> tuple[str, ...]:
    """Path components of a tar name, refusing absolute names and `..`."""
    if name.startswith("/"):
        raise UnsafeLayer(f"entry {name!r}: absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeLayer(f"entry {name!r}: '..' in path")
    return parts


class _Extractor:
    """Writes entries through directory fds opened without following symlinks."""

    def __init__(self, root: Path, limits: Limits) -> None:
        self.limits = limits
        self.entries = 0
        self.file_bytes = 0
        self.root_fd = os.open(root, os.O_DIRECTORY | os.O_RDONLY)
        self.cached: tuple[tuple[str, ...], int] | None = None
        self.dir_meta: list[tuple[tuple[str, ...], int, float]] = []
        self.pool = concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="unpack")
        self.pending: dict[tuple[str, ...], concurrent.futures.Future] = {}
        self.queued = 0

    def close(self) -> None:
        self.pool.shutdown(wait=True)  # every queued task closes the fd it was given
        self._drop_cache()
        os.close(self.root_fd)

    def _submit(self, parts: tuple[str, ...], fn, parent: int, *args) -> None:
        """Run fn(fd, *args) on a worker with its own dup of the parent fd (the cache may close ours)."""
        fd = os.dup(parent)
        try:
            self.pending[parts] = self.pool.submit(_closing, fd, fn, *args)
        except BaseException:
            os.close(fd)
            raise
        if len(self.pending) > PENDING_MAX:  # forget finished work, so that huge layers stay small in memory
            for key, fut in list(self.pending.items()):
                if fut.done():
                    del self.pending[key]
                    fut.result()
            if len(self.pending) > PENDING_MAX // 2:
                self._drain()

    def _wait_for(self, parts: tuple[str, ...]) -> None:
        fut = self.pending.pop(parts, None)
        if fut is not None:
            fut.result()

    def _drain(self) -> None:
        pending, self.pending, self.queued = self.pending, {}, 0
        for fut in pending.values():
            fut.result()

    def _drop_cache(self) -> None:
        if self.cached:
            os.close(self.cached[1])
            self.cached = None

    def _dir_fd(self, parts: tuple[str, ...], entry: str, create: bool = True) -> int:
        """An fd for the directory `parts`, created as needed; refuses a symlink or file on the way."""
        if not parts:
            return self.root_fd
        if self.cached and self.cached[0] == parts:
            return self.cached[1]
        for i in range(1, len(parts) + 1):
            self._wait_for(parts[:i])  # a symlink on the way may still be in flight: see it, refuse it
        self._drop_cache()
        fd = os.dup(self.root_fd)
        try:
            for part in parts:
                try:
                    nxt = os.open(part, os.O_DIRECTORY | os.O_NOFOLLOW | os.O_RDONLY, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)
                    nxt = os.open(part, os.O_DIRECTORY | os.O_NOFOLLOW | os.O_RDONLY, dir_fd=fd)
                except OSError as err:
                    if err.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise UnsafeLayer(f"entry {entry!r}: path goes through a symlink or a "
                                          f"non-directory ({part!r})") from None
                    raise
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        self.cached = (parts, fd)
        return fd

    def _count(self, m: tarfile.TarInfo) -> None:
        """Refuse the layer before writing what would take it past its limits."""
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise LayerTooLarge(f"more than {self.limits.max_entries} entries (the limit, {MAX_ENTRIES_ENV})")
        if m.isreg():  # a sparse file's size is its apparent size: its holes are written out as zeros
            self.file_bytes += m.size
            if self.file_bytes > self.limits.max_size:
                raise LayerTooLarge(f"entry {m.name!r} takes its files past "
                                    f"{human_size(self.limits.max_size)} (the limit, {MAX_SIZE_ENV})")

    def add(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self._count(m)
        parts = clean_name(m.name)
        if not parts:
            if m.isdir():
                self.dir_meta.append(((), m.mode, m.mtime))
                os.chown(self.root_fd, m.uid, m.gid)
            return
        parent_parts, base = parts[:-1], parts[-1]
        self._wait_for(parts)  # the same name earlier in this layer: let that write finish first
        parent = self._dir_fd(parent_parts, m.name)
        if base == OPAQUE:
            os.setxattr(f"/proc/self/fd/{parent}", "trusted.overlay.opaque", b"y")
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # aufs bookkeeping (.wh..wh.plnk and the like), meaningless to overlay
        if base.startswith(WHITEOUT_PREFIX):
            name = base[len(WHITEOUT_PREFIX):]
            if name in ("", ".", ".."):
                raise UnsafeLayer(f"entry {m.name!r}: whiteout of {name!r}")
            self._wait_for(parent_parts + (name,))
            self._clear(parent, name, parent_parts + (name,), keep_dir=False)
            os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)
            return
        self._clear(parent, base, parts, keep_dir=m.isdir())
        if m.isdir():
            with contextlib.suppress(FileExistsError):
                os.mkdir(base, 0o700, dir_fd=parent)
            self.dir_meta.append((parts, m.mode, m.mtime))
        elif m.isreg():
            src = tar.extractfile(m)
            if src is None:  # only for what is not a file, which m is
                raise LayerError(f"entry {m.name!r}: tar gives no contents for a regular file")
            if m.size > INLINE_OVER:
                self._write_file(src, m, parent, base)
            else:
                data = src.read()
                self._submit(parts, _write_small, parent, base, m, data)
                self.queued += len(data)
                if self.queued > QUEUED_MAX:
                    self._drain()
            return
        elif m.issym():
            self._submit(parts, _make_symlink, parent, base, m)
            return
        elif m.islnk():
            self._hardlink(m, parent, base)
            return  # a hard link shares its target's metadata
        elif m.ischr() or m.isblk() or m.isfifo():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
            os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=parent)
        else:
            log.warning("layer.entry_skipped", name=m.name, type=m.type)
            return
        self._metadata(m, parent, base, is_link=m.issym(), is_dir=m.isdir())

    def _clear(self, parent: int, name: str, parts: tuple[str, ...], keep_dir: bool) -> None:
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            self._drain()  # entries below it may still be in flight
            if self.cached and self.cached[0][:len(parts)] == parts:
                self._drop_cache()
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)

    @staticmethod
    def _write_file(src: IO[bytes], m: tarfile.TarInfo, parent: int, base: str) -> None:
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=parent)
        try:
            while chunk := src.read(CHUNK):
                _write_all(fd, chunk)
            os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            _Extractor._xattrs(m, f"/proc/self/fd/{fd}", follow=True)
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)

    def _hardlink(self, m: tarfile.TarInfo, parent: int, base: str) -> None:
        target = clean_name(m.linkname.lstrip("/"))
        if not target:
            raise UnsafeLayer(f"entry {m.name!r}: hard link to the layer root")
        self._wait_for(target)
        missing = UnsafeLayer(f"entry {m.name!r}: hard link target {m.linkname!r} is not in this layer")
        try:
            tparent = os.dup(self._dir_fd(target[:-1], m.name, create=False))
        except FileNotFoundError:
            raise missing from None
        try:
            parent = self._dir_fd(clean_name(m.name)[:-1], m.name)
            os.link(target[-1], base, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            raise missing from None
        finally:
            os.close(tparent)

    @staticmethod
    def _metadata(m: tarfile.TarInfo, parent: int, base: str, is_link: bool, is_dir: bool) -> None:
        os.chown(base, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
        if not is_link and not is_dir:
            os.chmod(base, m.mode & 0o7777, dir_fd=parent)
        _Extractor._xattrs(m, f"/proc/self/fd/{parent}/{base}", follow=False)
        if not is_dir:
            os.utime(base, (m.mtime, m.mtime), dir_fd=parent, follow_symlinks=False)

    @staticmethod
    def _xattrs(m: tarfile.TarInfo, path: str, follow: bool) -> None:
        for key, value in m.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr."):]
            if name.startswith("trusted.overlay."):
                continue  # only whiteout conversion may speak to overlayfs
            data = value.encode("utf-8", "surrogateescape")
            try:
                os.setxattr(path, name, data, follow_symlinks=follow)
            except OSError as err:
                log.warning("layer.xattr_skipped", name=m.name, xattr=name, error=err.strerror)

    def finish(self) -> None:
        """Directory modes and times last: entries written inside would change them."""
        self._drain()
        self._drop_cache()
        for parts, mode, mtime in sorted(self.dir_meta, key=lambda d: -len(d[0])):
            fd = self._dir_fd(parts, "/".join(parts), create=False) if parts else self.root_fd
            os.fchmod(fd, mode & 0o7777)
            os.utime(fd, (mtime, mtime))
        self._drop_cache()


def _closing(fd: int, fn, *args) -> None:
    try:
        fn(fd, *args)
    finally:
        os.close(fd)


def _write_small(parent: int, base: str, m: tarfile.TarInfo, data: bytes) -> None:
    _Extractor._write_file(io.BytesIO(data), m, parent, base)


def _make_symlink(parent: int, base: str, m: tarfile.TarInfo) -> None:
    os.symlink(m.linkname, base, dir_fd=parent)
    _Extractor._metadata(m, parent, base, is_link=True, is_dir=False)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
