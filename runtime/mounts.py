"""What is mounted where, read from the kernel's mount table."""

from __future__ import annotations

import os
import re


def is_mounted(path: str | os.PathLike) -> bool:
    """True if something is mounted at `path`. os.path.ismount misses a bind mount from the
    same filesystem (same st_dev), so the mount table is read instead."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as table:
        return any(_unescape(line.split(" ", 5)[4]) == target for line in table)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)
