"""The v1 driver's parsing of v1 control files, on a FAKE tree (the real one is exercised in tests/linux/oci)."""

from __future__ import annotations

from pathlib import Path

from runtime.cgroups import drivers, v1

CGROUP = "/pcompose/proj/c1"


def test_v1_stats_and_unlimited_values(tmp_path: Path):
    def put(ctrl: str, name: str, text: str) -> None:
        d = tmp_path / ctrl / CGROUP.lstrip("/")
        d.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(text)

    put("cpu", "cpu.stat", "nr_periods 10\nnr_throttled 4\nthrottled_time 123456\n")
    put("cpuacct", "cpuacct.usage", "987654321\n")
    put("memory", "memory.usage_in_bytes", "1000\n")
    put("memory", "memory.max_usage_in_bytes", "2000\n")
    put("memory", "memory.limit_in_bytes", "9223372036854771712\n")
    put("memory", "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    put("pids", "pids.current", "5\n")
    put("pids", "pids.max", "max\n")
    put("blkio", "blkio.throttle.io_service_bytes_recursive", "Total 0\n")
    put("blkio", "blkio.bfq.io_service_bytes_recursive",
        "254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 0\n8:0 Read 1\nTotal 12289\n")
    assert drivers.detect(tmp_path).version == 1
    stats = v1.V1Driver(tmp_path).stats(CGROUP)
    assert (stats.cpu_usage_ns, stats.cpu_periods, stats.cpu_throttled_periods, stats.cpu_throttled_ns) == (987654321, 10, 4, 123456)
    assert (stats.memory_usage, stats.memory_peak, stats.memory_limit, stats.oom_kills) == (1000, 2000, None, 3)
    assert (stats.pids_current, stats.pids_limit) == (5, None)
    assert (stats.io_read_bytes, stats.io_write_bytes) == (4097, 8192)
