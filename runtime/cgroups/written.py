"""The limits a container was given as control files say them, to tell a limit changed by hand
and to write it back: only the limits that were set are compared and written (one left to
the kernel's default has nothing to go back to)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runtime.cgroups import model

PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Limit:
    """One control file and the value it should hold; `same` compares what the kernel shows
    (it rounds memory to pages and writes cpusets in its own ranges)."""

    what: str  # the limit's name, as a user reads it
    controller: str  # the v1 hierarchy; v2 has one
    file: str
    value: str

    def same(self, text: str) -> bool:
        text = text.strip()
        if self.file.startswith("memory.") and self.value.lstrip("-").isdigit():
            return text.lstrip("-").isdigit() and int(text) == _pages(int(self.value))
        if self.file == "cpuset.cpus":
            return cpus(text) == cpus(self.value)
        if self.file == "cpu.max":
            return text.split() == self.value.split()
        return text == self.value


def _pages(value: int) -> int:
    return value if value < 0 else value // PAGE * PAGE


def cpus(text: str) -> set[int]:
    """`0-2,4` as the set of CPUs it names."""
    out: set[int] = set()
    for part in filter(None, text.replace(" ", "").split(",")):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


def v1(res: model.Resources) -> list[Limit]:
    """The files runc writes for `res` on cgroup v1, in the order they can be written: the
    memory+swap limit may not be below the memory limit, so it goes first when it rises and
    the caller tries the other order when the kernel refuses."""
    out = []
    if res.memory_swap is not None:
        out.append(Limit("memory+swap limit", "memory", "memory.memsw.limit_in_bytes",
                         str(res.memory_swap)))
    if res.memory_limit is not None:
        out.append(Limit("memory limit", "memory", "memory.limit_in_bytes", str(res.memory_limit)))
    if res.memory_reservation is not None:
        out.append(Limit("memory reservation", "memory", "memory.soft_limit_in_bytes",
                         str(res.memory_reservation)))
    if res.cpu_quota is not None:
        out.append(Limit("cpu period", "cpu", "cpu.cfs_period_us", str(res.cpu_period)))
        out.append(Limit("cpu quota", "cpu", "cpu.cfs_quota_us", str(res.cpu_quota)))
    if res.cpu_shares is not None:
        out.append(Limit("cpu shares", "cpu", "cpu.shares", str(res.cpu_shares)))
    if res.cpuset_cpus is not None:
        out.append(Limit("cpuset", "cpuset", "cpuset.cpus", res.cpuset_cpus))
    return out + _pids(res, "pids")


def v2(res: model.Resources) -> list[Limit]:
    """The files runc writes for `res` on cgroup v2 (swap is the part above memory there)."""
    out = []
    if res.memory_limit is not None:
        out.append(Limit("memory limit", "", "memory.max",
                         "max" if res.memory_limit < 0 else str(res.memory_limit)))
        if res.memory_swap is not None:
            swap = res.memory_swap - res.memory_limit if res.memory_swap >= 0 else -1
            out.append(Limit("memory+swap limit", "", "memory.swap.max",
                             "max" if swap < 0 else str(swap)))
    if res.memory_reservation is not None:
        out.append(Limit("memory reservation", "", "memory.low", str(res.memory_reservation)))
    if res.cpu_quota is not None:
        out.append(Limit("cpu quota", "", "cpu.max", f"{res.cpu_quota} {res.cpu_period}"))
    if res.cpu_shares is not None:  # runc's conversion of shares to a weight
        weight = 1 + ((res.cpu_shares - 2) * 9999) // 262142
        out.append(Limit("cpu shares", "", "cpu.weight", str(weight)))
    if res.cpuset_cpus is not None:
        out.append(Limit("cpuset", "", "cpuset.cpus", res.cpuset_cpus))
    return out + _pids(res, "")


def _pids(res: model.Resources, controller: str) -> list[Limit]:
    if res.pids_limit is None:
        return []
    return [Limit("pids limit", controller, "pids.max",
                  "max" if res.pids_limit <= 0 else str(res.pids_limit))]


def drift(limits: list[Limit], file_of: Callable[[Limit], Path]) -> str:
    """"" when every limit is in its control file (`file_of` says where), else which is not."""
    changed = [limit.what for limit in limits if _holds(limit, file_of(limit)) is False]
    return f"{', '.join(changed)} changed by hand" if changed else ""


def write_back(path: str, limits: list[Limit], file_of: Callable[[Limit], Path]) -> None:
    """Write every limit its control file does not hold (the cgroup `path` names errors)."""
    pending = [limit for limit in limits if _holds(limit, file_of(limit)) is False]
    # One limit may have to wait for another (v1: memory+swap never below memory): what
    # the kernel refuses is tried again after the rest.
    for _ in range(2):
        refused = []
        for limit in pending:
            try:
                file_of(limit).write_text(limit.value)
            except OSError:
                refused.append(limit)
        pending = refused
    if pending:
        raise OSError(f"cgroup {path}: the kernel refused {', '.join(p.what for p in pending)}")


def _holds(limit: Limit, file: Path) -> bool | None:
    """Whether the file holds the limit; None when this kernel has no such file (swap
    accounting off): nothing to compare or write."""
    try:
        return limit.same(file.read_text())
    except FileNotFoundError:
        return None
