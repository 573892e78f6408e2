"""Reading and writing cgroup control files in the kernel's documented formats."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path


def read_int(path: Path, default: int = 0) -> int:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, IndexError):
        return default


def _lines(path: Path) -> list[str]:
    """A control file's lines; none when the kernel does not offer the file."""
    try:
        return path.read_text().splitlines()
    except OSError:
        return []


def read_io_v1(path: Path) -> tuple[int, int]:
    """Bytes read and written from a v1 blkio *io_service_bytes* file ("8:0 Read 4096" lines
    per device, then "Total"); (0, 0) when the kernel keeps no count there."""
    read = written = 0
    for line in _lines(path):
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            if parts[1] == "Read":
                read += int(parts[2])
            elif parts[1] == "Write":
                written += int(parts[2])
    return read, written


def read_io_v2(path: Path) -> tuple[int, int]:
    """Bytes read and written from v2 io.stat ("8:0 rbytes=4096 wbytes=0 ..." per device)."""
    read = written = 0
    for line in _lines(path):
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key == "rbytes" and value.isdigit():
                read += int(value)
            elif key == "wbytes" and value.isdigit():
                written += int(value)
    return read, written


def read_limit(path: Path) -> int | None:
    """A limit file holding a number or "max"; None means unlimited (or no such file)."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return None if text in ("max", "") else int(text)


def read_keyed(path: Path) -> dict[str, int]:
    """Flat keyed files: one "key value" pair a line (cpu.stat, memory.events, oom_control)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    out: dict[str, int] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def read_pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in path.read_text().split()]
    except FileNotFoundError:
        return []


async def write_until(path: Path, value: str, done: Callable[[], bool], timeout: float) -> None:
    """Write `value` and poll `done`: freezing is asynchronous in the kernel."""
    path.write_text(value)
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: did not reach {value!r} within {timeout}s")
        await asyncio.sleep(0.005)
        # v1 keeps FREEZING while a task is in an uninterruptible sleep; writing again retries.
        path.write_text(value)


def rmdir_tree(top: Path) -> None:
    """rmdir a cgroup directory bottom-up (cgroup dirs hold only kernel files, never unlink)."""
    if not top.is_dir():
        return
    for dirpath, dirnames, _ in os.walk(top, topdown=False):
        for name in dirnames:
            _rmdir(Path(dirpath) / name)
    _rmdir(top)


def _rmdir(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.rmdir()
