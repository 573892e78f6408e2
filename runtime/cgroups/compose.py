"""Compose's resource keys (deploy.resources and the legacy service keys) to Resources, as docker does."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence

from runtime.cgroups import model

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3,
          "t": 1024**4, "tb": 1024**4}
_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


class ResourceError(ValueError):
    pass


def parse_bytes(value: int | str | None, where: str) -> int | None:
    """`512m`, `1g`, `1024` (bytes); -1 stays -1 (unlimited)."""
    if value is None or isinstance(value, int):
        return value
    match = _BYTES.match(str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise ResourceError(f"{where}: {value!r} is not a size (e.g. 512m, 1g)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def device_numbers(path: str, where: str) -> tuple[int, int]:
    """(major, minor) of a block device on this host, as blkio limits name devices."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise ResourceError(f"{where}: {path}: {error.strerror}") from None
    if not stat.S_ISBLK(info.st_mode):
        raise ResourceError(f"{where}: {path} is not a block device")
    return os.major(info.st_rdev), os.minor(info.st_rdev)


def blkio_devices(entries: Sequence[tuple[str, str, str, int | str | None]]
                  ) -> tuple[model.DeviceLimit, ...]:
    """blkio_config's per-device entries, (where, kind, path, value) each: rates in bytes
    (`1mb`) or operations per second, weights in 10..1000."""
    out = []
    for where, kind, path, value in entries:
        if not path or value is None:
            raise ResourceError(f"{where}: expected a path and a {'weight' if kind == 'weight' else 'rate'}")
        number: int | None
        if kind == "weight":
            number = int(value)
            if not 10 <= number <= 1000:
                raise ResourceError(f"{where}.weight: {number} is outside 10..1000")
        elif kind.endswith("_bps"):
            number = parse_bytes(value, f"{where}.rate")
        else:
            number = int(value)
        if number is None or number < 0:
            raise ResourceError(f"{where}: {value!r} must not be negative")
        major, minor = device_numbers(path, f"{where}.path")
        out.append(model.DeviceLimit(kind, major, minor, number))
    return tuple(out)


def _one(deploy, legacy, deploy_key: str, legacy_key: str):
    """compose refuses two different values for one limit; either alone is fine."""
    if deploy is not None and legacy is not None and deploy != legacy:
        raise ResourceError(f"{legacy_key} ({legacy}) and {deploy_key} ({deploy}) must have the same value")
    return deploy if deploy is not None else legacy


def from_compose(
    *,
    limits_memory: int | str | None = None,
    reservations_memory: int | str | None = None,
    limits_cpus: float | str | None = None,
    limits_pids: int | None = None,
    mem_limit: int | str | None = None,
    mem_reservation: int | str | None = None,
    memswap_limit: int | str | None = None,
    cpus: float | str | None = None,
    cpu_shares: int | None = None,
    cpu_period: int | None = None,
    cpu_quota: int | None = None,
    cpuset: str | None = None,
    pids_limit: int | None = None,
    blkio_weight: int | None = None,
    blkio_devices: tuple[model.DeviceLimit, ...] = (),
) -> model.Resources:
    memory = _one(parse_bytes(limits_memory, "deploy.resources.limits.memory"),
                  parse_bytes(mem_limit, "mem_limit"), "deploy.resources.limits.memory", "mem_limit")
    reservation = _one(parse_bytes(reservations_memory, "deploy.resources.reservations.memory"),
                       parse_bytes(mem_reservation, "mem_reservation"),
                       "deploy.resources.reservations.memory", "mem_reservation")
    cpu_count = _one(None if limits_cpus is None else float(limits_cpus),
                     None if cpus is None else float(cpus), "deploy.resources.limits.cpus", "cpus")
    period = cpu_period or model.DEFAULT_CPU_PERIOD
    if cpu_count is None and cpu_quota:
        cpu_count = cpu_quota / period
    swap = parse_bytes(memswap_limit, "memswap_limit")
    if swap is not None and swap != -1 and memory is not None and swap < memory:
        raise ResourceError(f"memswap_limit ({swap}) must not be below the memory limit ({memory})")
    if swap is None and memory is not None:
        swap = 2 * memory  # docker: as much swap as memory when only the memory limit is set
    if blkio_weight is not None and not 10 <= blkio_weight <= 1000:
        raise ResourceError(f"blkio_config.weight: {blkio_weight} is outside 10..1000")
    return model.Resources(
        memory_limit=memory, memory_reservation=reservation, memory_swap=swap,
        cpus=cpu_count, cpu_period=period, cpu_shares=cpu_shares, cpuset_cpus=cpuset,
        pids_limit=_one(limits_pids, pids_limit, "deploy.resources.limits.pids", "pids_limit"),
        blkio_weight=blkio_weight, blkio_devices=blkio_devices,
    )
