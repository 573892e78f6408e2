"""Pick the cgroup driver the host runs: v2 when the unified hierarchy holds the controllers."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from runtime.cgroups import model, v1, v2


class Driver(Protocol):
    version: int

    def exists(self, path: str) -> bool: ...
    def stats(self, path: str) -> model.Stats: ...
    def oom_kills(self, path: str) -> int: ...
    def procs(self, path: str) -> list[int]: ...
    def frozen(self, path: str) -> bool: ...
    async def freeze(self, path: str, timeout: float = 5.0) -> None: ...
    async def thaw(self, path: str, timeout: float = 5.0) -> None: ...
    def supports(self, controller: str, filename: str) -> bool: ...
    def remove(self, path: str) -> None: ...


def detect(root: str | Path = "/sys/fs/cgroup") -> Driver:
    """A hybrid host (v1 controllers plus an empty cgroup2 at unified/) is v1."""
    root = Path(root)
    if (root / "cgroup.controllers").exists():
        return v2.V2Driver(root)
    return v1.V1Driver(root)
