"""Dirs and files of the state root and run dir: private to root, and replaced whole.

The state root holds what containers left in their roots (a setuid binary in rootfs/<c>/merged
runs as root for whoever reaches it) and every stack's environment values, so the root and
the run dir are 0700 root whoever makes them first, and files that hold configuration are 0600.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: str | os.PathLike) -> Path:
    """`path` as a dir, made 0700 if it is missing (its missing parents as the umask says);
    an existing one is left as it is (the agent tightens the root and run dir: `tighten`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, PRIVATE_DIR)
    except FileExistsError:
        if not path.is_dir():
            raise
    return path


def tighten(path: str | os.PathLike) -> str | None:
    """Make `path` a dir of root's only (0700, owned by us), making it if missing; what it
    was before ("0755 1000:1000") when it had to change, else None."""
    path = private_dir(path)
    st = os.stat(path)
    owner = (os.geteuid(), os.getegid())
    if st.st_mode & 0o7777 == PRIVATE_DIR and (st.st_uid, st.st_gid) == owner:
        return None
    if (st.st_uid, st.st_gid) != owner:
        # Before the mode: the dir must not be another user's with 0700 even for a moment.
        os.chmod(path, 0)
        os.chown(path, *owner)
    os.chmod(path, PRIVATE_DIR)
    return f"{st.st_mode & 0o7777:04o} {st.st_uid}:{st.st_gid}"


def write(path: str | os.PathLike, data: str | bytes, mode: int = PRIVATE_FILE, *,
          sync: bool = False) -> None:
    """Replace `path` whole with `data` and the given mode: a reader sees the old file or the
    new one, never half of one, and never the new content under a wider mode. `sync`: on disk
    before it replaces the old one, for what a power cut must not lose (image refs, logins).
    The one place pcompose writes a file atomically."""
    path = Path(path)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as out:
            if mode != PRIVATE_FILE:
                os.fchmod(out.fileno(), mode)
            out.write(data.encode() if isinstance(data, str) else data)
            if sync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


_serial = itertools.count()


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new 0600 file of our own next to `path`: two writers of one file never share a temp.
    As mkstemp makes one (O_EXCL, never through a symlink), named by process and a counter
    instead of random letters: mkstemp's names cost more than the write, per container."""
    while True:
        tmp = f"{path.parent}/.{path.name}.{os.getpid()}-{next(_serial)}.tmp"
        try:
            return os.open(tmp, _TEMP_FLAGS, PRIVATE_FILE), tmp
        except FileExistsError:  # left by a killed process that had our PID: take the next
            continue


_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def open_private(path: str | os.PathLike, flags: int = os.O_WRONLY | os.O_CREAT | os.O_APPEND):
    """A file descriptor on `path`, made 0600 if new and narrowed to 0600 if it was wider
    (a log kept from before)."""
    fd = os.open(path, flags | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, PRIVATE_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def narrow(path: str | os.PathLike, mode: int = PRIVATE_FILE) -> None:
    """Take away from an existing file the permissions beyond `mode`; a missing file is fine."""
    try:
        current = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return
    if current & ~mode:
        os.chmod(path, current & mode)
