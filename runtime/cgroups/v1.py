"""cgroup v1 driver: one hierarchy per controller under /sys/fs/cgroup/<controller>/."""

from __future__ import annotations

from pathlib import Path

from runtime.cgroups import files, model, written

# The kernel reports "no limit" as the largest page-aligned signed 64-bit value.
_UNLIMITED_FLOOR = 1 << 62


class V1Driver:
    version = 1

    def __init__(self, root: str | Path = "/sys/fs/cgroup") -> None:
        self.root = Path(root)

    def dir(self, controller: str, path: str) -> Path:
        return self.root / controller / path.lstrip("/")

    def exists(self, path: str) -> bool:
        return self.dir("memory", path).is_dir()

    def stats(self, path: str) -> model.Stats:
        cpu = files.read_keyed(self.dir("cpu", path) / "cpu.stat")
        oom = files.read_keyed(self.dir("memory", path) / "memory.oom_control")
        limit = files.read_int(self.dir("memory", path) / "memory.limit_in_bytes")
        return model.Stats(
            cpu_usage_ns=files.read_int(self.dir("cpuacct", path) / "cpuacct.usage"),
            cpu_periods=cpu.get("nr_periods", 0),
            cpu_throttled_periods=cpu.get("nr_throttled", 0),
            cpu_throttled_ns=cpu.get("throttled_time", 0),
            memory_usage=files.read_int(self.dir("memory", path) / "memory.usage_in_bytes"),
            memory_peak=files.read_int(self.dir("memory", path) / "memory.max_usage_in_bytes"),
            memory_limit=None if limit >= _UNLIMITED_FLOOR else limit,
            oom_kills=oom.get("oom_kill", 0),
            pids_current=files.read_int(self.dir("pids", path) / "pids.current"),
            pids_limit=files.read_limit(self.dir("pids", path) / "pids.max"),
            **dict(zip(("io_read_bytes", "io_write_bytes"), self._io(path), strict=True)),
        )

    def _io(self, path: str) -> tuple[int, int]:
        """Throttle counters (kept only while some throttle rule is set on the device in recent
        kernels), else those of the bfq scheduler; docker reads the same files."""
        blkio = self.dir("blkio", path)
        counted = files.read_io_v1(blkio / "blkio.throttle.io_service_bytes_recursive")
        return counted if any(counted) else files.read_io_v1(
            blkio / "blkio.bfq.io_service_bytes_recursive")

    def oom_kills(self, path: str) -> int:
        return files.read_keyed(self.dir("memory", path) / "memory.oom_control").get("oom_kill", 0)

    def procs(self, path: str) -> list[int]:
        return files.read_pids(self.dir("pids", path) / "cgroup.procs")

    def frozen(self, path: str) -> bool:
        return (self.dir("freezer", path) / "freezer.state").read_text().strip() == "FROZEN"

    async def freeze(self, path: str, timeout: float = 5.0) -> None:
        """Freeze and wait: the state reads FREEZING until every task has stopped."""
        state = self.dir("freezer", path) / "freezer.state"
        await files.write_until(state, "FROZEN", lambda: state.read_text().strip() == "FROZEN", timeout)

    async def thaw(self, path: str, timeout: float = 5.0) -> None:
        state = self.dir("freezer", path) / "freezer.state"
        await files.write_until(state, "THAWED", lambda: state.read_text().strip() == "THAWED", timeout)

    def limits_drift(self, path: str, resources: model.Resources) -> str:
        """"" when every limit `resources` sets is in its control file, else which is not."""
        return written.drift(written.v1(resources),
                             lambda limit: self.dir(limit.controller, path) / limit.file)

    def write_limits(self, path: str, resources: model.Resources) -> None:
        """Write back every limit `resources` sets that its control file does not hold."""
        written.write_back(path, written.v1(resources),
                           lambda limit: self.dir(limit.controller, path) / limit.file)

    def supports(self, controller: str, filename: str) -> bool:
        """Whether the host's kernel offers a control file (blkio.weight is absent without CFQ)."""
        return (self.root / controller / filename).exists()

    def remove(self, path: str) -> None:
        _refuse_root(path)
        """Remove `path` and everything below it from every hierarchy; a missing dir is fine."""
        for hierarchy in sorted(self.root.iterdir()):
            files.rmdir_tree(hierarchy / path.lstrip("/"))



def _refuse_root(path: str) -> None:
    if not path.strip("/"):
        raise ValueError(f"cgroup path {path!r}: refusing to remove a hierarchy's root")
