"""cgroup directories and files where the runtime's detected driver puts them, so a test reads
what the runtime wrote and a host of another cgroup version fails it loudly instead of letting
it look at paths that do not exist."""

from __future__ import annotations

from pathlib import Path

from runtime.cgroups import drivers, v1, v2


def driver() -> drivers.Driver:
    return drivers.detect()


def v1_driver() -> v1.V1Driver:
    """The v1 driver, or a failure that says this test reads v1's files and the host is not v1."""
    found = driver()
    if not isinstance(found, v1.V1Driver):
        raise AssertionError(f"this test reads cgroup v1's files, but the runtime detected cgroup "
                             f"v{found.version} on this host: the check needs its v2 form")
    return found


def v1_file(path: str, name: str) -> Path:
    """A v1 controller's file of cgroup `path`, e.g. v1_file(p, "memory.limit_in_bytes")."""
    return v1_driver().dir(name.split(".", 1)[0], path) / name


def dirs(path: str) -> list[Path]:
    """Every directory cgroup `path` has: one per mounted v1 controller, or v2's one. Where the
    host mounts no controller at all the list would be empty and a test of absence vacuous."""
    found = driver()
    if isinstance(found, v2.V2Driver):
        return [found.dir(path)]
    assert isinstance(found, v1.V1Driver)
    controllers = [p.name for p in found.root.iterdir()
                   if p.is_dir() and not p.is_symlink() and p.name != "unified"
                   and (p / "cgroup.procs").exists()]
    if "memory" not in controllers:
        raise AssertionError(f"no cgroup v1 memory controller under {found.root}")
    return [found.dir(c, path) for c in sorted(controllers)]


def children(path: str) -> set[str]:
    """The names of the cgroups directly below `path` (from the memory controller on v1, which
    every container joins, or the unified tree on v2)."""
    found = driver()
    top = found.dir(path) if isinstance(found, v2.V2Driver) else v1_driver().dir("memory", path)
    return {p.name for p in top.iterdir() if p.is_dir()} if top.is_dir() else set()
