"""Plain data the cgroup drivers share: the limits a container asks for and the usage they report."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CPU_PERIOD = 100_000


@dataclass(frozen=True)
class DeviceLimit:
    """A per-device block I/O limit: `kind` is read_bps, write_bps, read_iops, write_iops or
    weight; the device by its numbers (major:minor), as the kernel takes it."""

    kind: str
    major: int
    minor: int
    value: int


@dataclass(frozen=True)
class Resources:
    """Limits of one container, in kernel units; None leaves the kernel's default."""

    memory_limit: int | None = None  # bytes
    memory_reservation: int | None = None  # bytes, a soft limit
    memory_swap: int | None = None  # memory + swap in bytes, as compose's memswap_limit; -1 unlimited
    cpus: float | None = None  # turned into quota / period
    cpu_period: int = DEFAULT_CPU_PERIOD  # microseconds
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None  # -1 unlimited
    blkio_weight: int | None = None  # 10..1000
    blkio_devices: tuple[DeviceLimit, ...] = ()

    @property
    def cpu_quota(self) -> int | None:
        if self.cpus is None:
            return None
        return max(1000, round(self.cpus * self.cpu_period))


@dataclass(frozen=True)
class Stats:
    """One sample of a container's cgroup: cumulative counters and current gauges."""

    cpu_usage_ns: int
    cpu_periods: int
    cpu_throttled_periods: int
    cpu_throttled_ns: int
    memory_usage: int
    memory_peak: int
    memory_limit: int | None  # None when unlimited
    oom_kills: int
    pids_current: int
    pids_limit: int | None  # None when unlimited
    io_read_bytes: int = 0  # block I/O, where the kernel counts it for the cgroup
    io_write_bytes: int = 0
