"""An overlay upper dir as an OCI layer: whiteouts converted, overlay xattrs and run artefacts dropped."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import stat
import tarfile
import tempfile
import typing
from collections.abc import Iterable
from pathlib import Path

from runtime.images import manifest, store as store_mod, unpack

OPAQUE_XATTR = "trusted.overlay.opaque"
OVERLAY_XATTRS = "trusted.overlay."
# Uncompressed: gzip cost more than the rest of a COPY of a few MiB, and the store is local (a
# registry takes plain tar layers as well).
MEDIA_TYPE = manifest.OCI_LAYER


class LayerError(Exception):
    """An upper dir that cannot become a layer; says which entry."""


@dataclasses.dataclass(frozen=True)
class Layer:
    digest: str      # the blob as stored (the tar itself)
    diff_id: str     # sha256 of the uncompressed tar
    size: int        # of the blob
    media_type: str = MEDIA_TYPE


def remove_stubs(upper: Path, stubs: Iterable[str], lower: Iterable[Path] = ()) -> None:
    """Take out of `upper` what runc made only to mount something over it (`etc/hosts`, `proc`,
    ...: relative paths that were not in the image), deepest first, while they are still empty;
    then the parent dirs that making them copied up, when they are left empty and as the image has
    them (same mode and owner in the topmost `lower` dir holding them)."""
    lowers = list(lower)
    parents: set[str] = set()
    for rel in sorted(set(stubs), key=lambda r: -r.count("/")):
        path = upper / rel
        with contextlib.suppress(FileNotFoundError):
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode):
                with contextlib.suppress(OSError):  # not empty: the RUN put something there
                    path.rmdir()
            elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
                path.unlink()
        if "/" in rel:
            parents.add(rel.rsplit("/", 1)[0])
    for rel in sorted(parents - set(stubs), key=lambda r: -r.count("/")):
        path = upper / rel
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode) or any(os.scandir(path)) or _xattr(path, OPAQUE_XATTR) == b"y":
            continue
        below = next((low / rel for low in lowers if (low / rel).exists()), None)
        if below is None:
            continue
        lst = below.lstat()
        if (lst.st_mode, lst.st_uid, lst.st_gid) == (st.st_mode, st.st_uid, st.st_gid):
            path.rmdir()


def is_empty(upper: Path) -> bool:
    with os.scandir(upper) as entries:
        return not any(True for _ in entries)


def write(store: store_mod.Store, upper: Path, *, clean: bool = False) -> Layer:
    """The layer tar of `upper`, into the store once by digest. Deterministic: entries in name
    order, numeric owners only, mtimes as the files have them (whole seconds, as moby). `clean`
    also takes overlay's bookkeeping xattrs off the files (all but opaque), so that the dir can
    become the layer's unpacked dir as it is (adopt)."""
    writer = store.writer()
    try:
        if clean:
            _strip_overlay_xattrs(upper)
        with tarfile.open(fileobj=typing.cast(typing.IO[bytes], writer), mode="w|",
                          format=tarfile.PAX_FORMAT) as tar:
            _add_tree(tar, upper, clean)
        size = writer.size
        digest = writer.commit()
    finally:
        writer.abort()
    return Layer(digest, digest, size)


def adopt(store: store_mod.Store, upper: Path, layer: Layer, parent_chain: str | None) -> str:
    """layers/<chainid>/ for `layer` above `parent_chain`, made by moving `upper` (written with
    clean=True) into place instead of unpacking the tar again; its chain id."""
    chain = manifest.chain_id(parent_chain, layer.diff_id)
    with store.shared():
        if not store.has_layer(chain):
            tmp = Path(tempfile.mkdtemp(dir=store.layers_dir, prefix=".tmp-"))
            try:
                os.rename(upper, tmp / "diff")
                unpack.syncfs(tmp)  # the files on disk before the marker says they are
                (tmp / "complete").write_text(json.dumps({"chain_id": chain, "diff_id": layer.diff_id}))
                try:
                    os.rename(tmp, store.layer_dir(chain))
                except OSError as err:
                    if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        unpack.ensure_link(store, chain)
    return chain


def _strip_overlay_xattrs(path: Path) -> None:
    for name in _xattr_names(path):
        if name.startswith(OVERLAY_XATTRS) and name != OPAQUE_XATTR:
            with contextlib.suppress(OSError):
                os.removexattr(path, name, follow_symlinks=False)


def _add_tree(tar: tarfile.TarFile, upper: Path, clean: bool = False) -> None:
    links: dict[tuple[int, int], str] = {}
    stack = [("", upper)]
    while stack:
        rel_dir, path = stack.pop()
        with os.scandir(path) as it:
            names = sorted(e.name for e in it)
        subdirs = []
        for name in names:
            rel = f"{rel_dir}{name}"
            full = path / name
            st = full.lstat()
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                info = tarfile.TarInfo(f"{rel_dir}{unpack.WHITEOUT_PREFIX}{name}")
                info.mtime = int(st.st_mtime)
                tar.addfile(info)
                continue
            if clean:
                _strip_overlay_xattrs(full)
            info = _info(full, rel, st)
            if info.isreg() and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in links:
                    info.type, info.linkname, info.size = tarfile.LNKTYPE, links[key], 0
                    tar.addfile(info)
                    continue
                links[key] = rel
            if info.isreg():
                with open(full, "rb") as src:
                    tar.addfile(info, src)
            else:
                tar.addfile(info)
            if info.isdir():
                if _xattr(full, OPAQUE_XATTR) == b"y":
                    opq = tarfile.TarInfo(f"{rel}/{unpack.OPAQUE}")
                    opq.mtime = int(st.st_mtime)
                    tar.addfile(opq)
                subdirs.append((f"{rel}/", full))
        # a stack: push in reverse so that the walk comes out in name order, depth first
        stack.extend(reversed(subdirs))


def _info(full: Path, rel: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    mode = st.st_mode
    if stat.S_ISREG(mode):
        info.type, info.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(full)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
    else:
        raise LayerError(f"{rel}: a socket or unknown file type cannot go into a layer")
    headers = {}
    for name in sorted(_xattr_names(full)):
        if name.startswith(OVERLAY_XATTRS):
            continue  # overlay's own bookkeeping (uuid, impure, origin, opaque): never in a layer
        value = _xattr(full, name)
        if value is not None:
            headers[f"SCHILY.xattr.{name}"] = value.decode("utf-8", "surrogateescape")
    if headers:
        info.pax_headers = headers
    return info


def _xattr_names(path: Path) -> list[str]:
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []


def _xattr(path: Path, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None
