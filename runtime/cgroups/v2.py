"""cgroup v2 driver: one unified hierarchy; files as Documentation/admin-guide/cgroup-v2.rst defines."""

from __future__ import annotations

from pathlib import Path

from runtime.cgroups import files, model, written


class V2Driver:
    version = 2

    def __init__(self, root: str | Path = "/sys/fs/cgroup") -> None:
        self.root = Path(root)

    def dir(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def exists(self, path: str) -> bool:
        return self.dir(path).is_dir()

    def stats(self, path: str) -> model.Stats:
        d = self.dir(path)
        cpu = files.read_keyed(d / "cpu.stat")
        usage = files.read_int(d / "memory.current")
        peak_file = d / "memory.peak"  # since 5.19; older kernels only have the current value
        return model.Stats(
            cpu_usage_ns=cpu.get("usage_usec", 0) * 1000,
            cpu_periods=cpu.get("nr_periods", 0),
            cpu_throttled_periods=cpu.get("nr_throttled", 0),
            cpu_throttled_ns=cpu.get("throttled_usec", 0) * 1000,
            memory_usage=usage,
            memory_peak=files.read_int(peak_file) if peak_file.exists() else usage,
            memory_limit=files.read_limit(d / "memory.max"),
            oom_kills=self.oom_kills(path),
            pids_current=files.read_int(d / "pids.current"),
            pids_limit=files.read_limit(d / "pids.max"),
            **dict(zip(("io_read_bytes", "io_write_bytes"), files.read_io_v2(d / "io.stat"), strict=True)),
        )

    def oom_kills(self, path: str) -> int:
        return files.read_keyed(self.dir(path) / "memory.events").get("oom_kill", 0)

    def procs(self, path: str) -> list[int]:
        return files.read_pids(self.dir(path) / "cgroup.procs")

    def frozen(self, path: str) -> bool:
        return files.read_keyed(self.dir(path) / "cgroup.events").get("frozen", 0) == 1

    async def freeze(self, path: str, timeout: float = 5.0) -> None:
        """Write cgroup.freeze and wait for cgroup.events to say "frozen 1"."""
        await files.write_until(self.dir(path) / "cgroup.freeze", "1", lambda: self.frozen(path), timeout)

    async def thaw(self, path: str, timeout: float = 5.0) -> None:
        await files.write_until(
            self.dir(path) / "cgroup.freeze", "0", lambda: not self.frozen(path), timeout
        )

    def limits_drift(self, path: str, resources: model.Resources) -> str:
        """"" when every limit `resources` sets is in its control file, else which is not."""
        return written.drift(written.v2(resources), lambda limit: self.dir(path) / limit.file)

    def write_limits(self, path: str, resources: model.Resources) -> None:
        """Write back every limit `resources` sets that its control file does not hold."""
        written.write_back(path, written.v2(resources), lambda limit: self.dir(path) / limit.file)

    def supports(self, controller: str, filename: str) -> bool:
        enabled = (self.root / "cgroup.controllers").read_text().split()
        return controller in enabled or (controller == "blkio" and "io" in enabled)

    def remove(self, path: str) -> None:
        _refuse_root(path)
        files.rmdir_tree(self.dir(path))


def _refuse_root(path: str) -> None:
    if not path.strip("/"):
        raise ValueError(f"cgroup path {path!r}: refusing to remove a hierarchy's root")
