"""The build context: COPY/ADD sources found in it as BuildKit finds them, and their content checksum.

A source is a '/'-separated path relative to the context, each part a Go filepath.Match glob.
It is resolved inside the context: `..` that climbs out of it, or a symlink whose target lies
outside it, is refused (ContextError naming the source), as is a source that matches nothing.
What .dockerignore excludes is not in the context at all: it matches nothing and is not copied,
and an excluded directory is not even walked unless a `!` pattern may take something back.

The checksum is what the build cache keys a COPY on (BuildKit's content checksum): each entry's
path, type, permission bits, owner and content (a symlink: its target), never its mtime, so
that `touch` alone keeps the cache and a changed byte or mode does not. File digests are kept
per (path, size, mtime, ctime, inode) for the process's life, bounded: a warm build, even
with a new Context, reads no file that has not changed.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from runtime import safepath
from runtime.build import gopath, ignore

FILE, DIR, SYMLINK, OTHER = "file", "dir", "symlink", "other"
_DIGESTS_MAX = 200_000  # file digests kept for the process's next builds (~150 bytes each)
# shared by every Context: the agent builds again and again from the same unchanged files
_digests: dict[tuple[str, int, int, int, int, int], str] = {}


# files of stages' roots (COPY --from): their overlay is mounted anew for each build, so they are
# known by their path in the root and what stat says of the (immutable) layer file under it
_root_digests: dict[tuple[str, int, int, int, int], str] = {}


def tree_checksum(sources: Sequence[tuple[str, Path]]) -> str:
    """What `Context.checksum` is for files outside a context (a stage's root, for COPY --from):
    each (path in the root, host path) and all under it, by path, type, permissions, owner
    and content, so that a stage rebuilt into the same files keeps the steps after the copy."""
    digest = hashlib.sha256()
    for rel, path in sources:
        for sub_rel, sub_path in _tree(rel, Path(path)):
            st = os.lstat(sub_path)
            key = (sub_rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
            _hash_record(digest, _kind(st.st_mode), sub_rel, sub_path, st, _root_digests, key)
    return "sha256:" + digest.hexdigest()


def _hash_record(digest: hashlib._Hash, kind: str, rel: str, path: Path, st: os.stat_result,
                 cache: dict[Any, str], key: tuple) -> None:
    """One entry of a checksum: its type, path, permissions, owner and content (a file's
    sha256, kept in `cache` under `key`: what stat says of it)."""
    if kind == FILE:
        content = cache.get(key)
        if content is None:
            with open(path, "rb") as f:
                content = hashlib.file_digest(f, "sha256").hexdigest()
            if len(cache) >= _DIGESTS_MAX:
                cache.clear()
            cache[key] = content
    elif kind == SYMLINK:
        content = os.readlink(path)
    elif kind == OTHER:
        content = f"{stat.S_IFMT(st.st_mode):o}:{st.st_rdev}"
    else:
        content = ""
    record = f"{kind}\0{rel}\0{stat.S_IMODE(st.st_mode):o}\0{st.st_uid}\0{st.st_gid}\0{content}\n"
    digest.update(record.encode("utf-8", "surrogateescape"))


def _tree(rel: str, path: Path) -> Iterator[tuple[str, Path]]:
    """`path` and, for a directory, everything under it in name order (links not followed)."""
    yield rel, path
    if path.is_dir() and not path.is_symlink():
        for name in sorted(os.listdir(path)):
            yield from _tree(f"{rel}/{name}", path / name)


class ContextError(ValueError):
    """A source that is missing from the build context or lies outside it."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One path of the context: `rel` as the source names it ('/'-separated, "." for the
    root), `path` where it really is on the host, `kind` file, dir, symlink or other.
    A source itself is followed when it is a symlink (so it is a file or a dir); entries
    under a source dir are as they are (a symlink there is a symlink, copied as one)."""

    rel: str
    path: Path
    kind: str


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISLNK(mode):
        return SYMLINK
    return OTHER


class Context:
    """A local directory as a build context, filtered by its ignore patterns."""

    def __init__(self, root: Path, matcher: ignore.Matcher) -> None:
        self.root = Path(root)
        self.matcher = matcher
        self._real_root = os.path.realpath(self.root)
        if not os.path.isdir(self._real_root):
            raise ContextError(f"build context {self.root}: not a directory")

    def excluded(self, rel: str) -> bool:
        """Whether .dockerignore leaves `rel` (relative to the context) out of it."""
        return self.matcher.excluded(rel)

    def left_out(self, rel: str, *, is_dir: bool) -> bool:
        """For a walker that copies a source dir itself: whether to skip the entry `rel` (in the
        context) and, for a dir, all under it. An excluded dir is still entered when a `!`
        pattern may take back something under it (`walk` also leaves such a dir out when
        nothing is taken back; a walker that only asks this makes it, empty)."""
        if not self.matcher.excluded(rel):
            return False
        return not (is_dir and self.matcher.may_include_under(rel))

    def sources(self, patterns: Sequence[str], *, excludes: Sequence[str] = ()) -> list[Entry]:
        """What each source pattern names, in the patterns' order (a glob's matches sorted,
        each entry once); `walk` gives what lies under a dir among them."""
        skip = ignore.Matcher(list(excludes)) if excludes else None
        out: list[Entry] = []
        seen: set[str] = set()
        for pattern in patterns:
            found = [e for e in self._resolve_pattern(pattern)
                     if skip is None or not skip.excluded(e.rel)]
            if not found:
                raise ContextError(f"{pattern}: not found in the build context")
            for entry in found:
                if entry.rel not in seen:
                    seen.add(entry.rel)
                    out.append(entry)
        return out

    def walk(self, entry: Entry, *, excludes: Sequence[str] = ()) -> Iterator[Entry]:
        """What lies under a dir source, depth first in name order, without what .dockerignore
        or `excludes` (matched against the path in the context and the path under `entry`)
        leave out; a directory left out appears only if something under it is taken back."""
        if entry.kind != DIR:
            return iter(())
        skip = ignore.Matcher(list(excludes)) if excludes else None
        return self._walk(entry.path, entry.rel, self._rel_of(entry.path), "", skip)

    def checksum(self, patterns: Sequence[str], *, excludes: Sequence[str] = ()) -> str:
        """sha256 of the sources' paths, types, permissions, owners and contents (not mtimes)."""
        digest = hashlib.sha256()
        for entry in self.sources(patterns, excludes=excludes):
            self._hash_entry(digest, entry)
            for sub in self.walk(entry, excludes=excludes):
                self._hash_entry(digest, sub)
        return "sha256:" + digest.hexdigest()

    def _hash_entry(self, digest: hashlib._Hash, entry: Entry) -> None:
        st = os.lstat(entry.path) if entry.kind == SYMLINK else os.stat(entry.path)
        key = (str(entry.path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
        _hash_record(digest, entry.kind, entry.rel, entry.path, st, _digests, key)

    def _rel_of(self, real: Path | str) -> str:
        rel = os.path.relpath(real, self._real_root)
        return "." if rel == "." else rel.replace(os.sep, "/")

    def _resolve_pattern(self, pattern: str) -> list[Entry]:
        cleaned = gopath.clean(pattern.lstrip("/") or ".")
        if cleaned == ".." or cleaned.startswith("../"):
            raise ContextError(f"{pattern}: outside the build context")
        if cleaned == ".":
            return [Entry(rel=".", path=Path(self._real_root), kind=DIR)]
        candidates = [""]
        for part in cleaned.split("/"):
            if gopath.has_meta(part):
                candidates = [c for base in candidates for c in self._glob(base, part, pattern)]
            else:
                candidates = [f"{base}/{part}" if base else part for base in candidates]
        out = []
        for rel in candidates:
            entry = self._source(rel, pattern, missing_ok=len(candidates) > 1 or gopath.has_meta(cleaned))
            if entry is not None:
                out.append(entry)
        return out

    def _glob(self, base: str, part: str, pattern: str) -> list[str]:
        real = self._real(base or ".", pattern, missing_ok=True)
        if real is None or not os.path.isdir(real):
            return []
        try:
            names = sorted(os.listdir(real))
        except OSError:
            return []
        out = []
        for name in names:
            try:
                hit = gopath.match(part, name)
            except gopath.BadPattern as err:
                raise ContextError(f"{pattern}: {err}") from None
            if hit:
                out.append(f"{base}/{name}" if base else name)
        return out

    def _source(self, rel: str, pattern: str, *, missing_ok: bool) -> Entry | None:
        real = self._real(rel, pattern, missing_ok=missing_ok)
        if real is None:
            return None
        real_rel = self._rel_of(real)
        kind = _kind(os.stat(real).st_mode)
        if self._absent(real_rel, kind=kind) or (rel != real_rel and self._absent(rel)):
            if missing_ok:
                return None
            raise ContextError(f"{pattern}: not found in the build context (excluded by .dockerignore)")
        return Entry(rel=rel, path=Path(real), kind=kind)

    def _absent(self, rel: str, *, kind: str = "") -> bool:
        """Left out of the context: excluded, and (a dir) nothing under it taken back."""
        if not self.matcher.excluded(rel):
            return False
        if kind != DIR or not self.matcher.may_include_under(rel):
            return True
        real = os.path.join(self._real_root, rel)
        return next(self._walk(Path(real), rel, rel, "", None), None) is None

    def _real(self, rel: str, pattern: str, *, missing_ok: bool) -> str | None:
        """The host path of `rel`, its symlinks followed inside the context and refused
        when they lead out of it."""
        try:
            fd = safepath.open_at(self._real_root, rel, scope=safepath.BENEATH)
        except safepath.Escape:
            raise ContextError(f"{pattern}: {rel} leads outside the build context") from None
        except (FileNotFoundError, NotADirectoryError):
            if missing_ok:
                return None
            raise ContextError(f"{pattern}: not found in the build context") from None
        except OSError as err:
            if err.errno == errno.EXDEV:  # openat2's RESOLVE_BENEATH refusal
                raise ContextError(f"{pattern}: {rel} leads outside the build context") from None
            raise ContextError(f"{pattern}: {err.strerror}") from None
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)

    def _walk(self, real_dir: Path, rel: str, ctx_rel: str, under: str,
              skip: ignore.Matcher | None) -> Iterator[Entry]:
        try:
            with os.scandir(real_dir) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as err:
            raise ContextError(f"{rel}: {err.strerror}") from None
        for child in children:
            child_ctx = child.name if ctx_rel == "." else f"{ctx_rel}/{child.name}"
            child_rel = child.name if rel == "." else f"{rel}/{child.name}"
            child_under = f"{under}/{child.name}" if under else child.name
            kind = _kind(child.stat(follow_symlinks=False).st_mode)
            entry = Entry(rel=child_rel, path=Path(child.path), kind=kind)
            left_out = self.matcher.excluded(child_ctx) or (
                skip is not None and (skip.excluded(child_ctx) or skip.excluded(child_under)))
            if not left_out:
                yield entry
                if kind == DIR:
                    yield from self._walk(Path(child.path), child_rel, child_ctx, child_under, skip)
                continue
            if kind != DIR or not self._may_take_back(child_ctx, child_under, skip):
                continue
            below = self._walk(Path(child.path), child_rel, child_ctx, child_under, skip)
            first = next(below, None)
            if first is not None:
                yield entry
                yield first
                yield from below

    def _may_take_back(self, ctx_rel: str, under: str, skip: ignore.Matcher | None) -> bool:
        if self.matcher.excluded(ctx_rel) and not self.matcher.may_include_under(ctx_rel):
            return False
        if skip is not None and (skip.excluded(ctx_rel) or skip.excluded(under)):
            return skip.may_include_under(ctx_rel) or skip.may_include_under(under)
        return True
