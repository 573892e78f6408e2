"""The cgroup v2 driver against a FAKE tree laid out in the kernel's documented file formats
(Documentation/admin-guide/cgroup-v2.rst): this machine cannot mount v2 controllers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runtime.cgroups import drivers, v2

CGROUP = "/pcompose/proj/proj-web-1"


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    d = tmp_path / CGROUP.lstrip("/")
    d.mkdir(parents=True)
    (d / "cpu.stat").write_text(
        "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n"
        "core_sched.force_idle_usec 0\nnr_periods 120\nnr_throttled 37\nthrottled_usec 900000\n"
        "nr_bursts 0\nburst_usec 0\n"
    )
    (d / "memory.current").write_text("52428800\n")
    (d / "memory.peak").write_text("67108864\n")
    (d / "memory.max").write_text("134217728\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n")
    (d / "pids.current").write_text("7\n")
    (d / "pids.max").write_text("max\n")
    (d / "io.stat").write_text("254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
                               "8:0 rbytes=1 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n")
    (d / "cgroup.procs").write_text("101\n102\n")
    (d / "cgroup.freeze").write_text("0\n")
    (d / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    return tmp_path


def test_detect_picks_v2_on_a_unified_root(fake_root):
    assert drivers.detect(fake_root).version == 2


def test_stats_read_the_documented_formats(fake_root):
    stats = v2.V2Driver(fake_root).stats(CGROUP)
    assert stats.cpu_usage_ns == 2_500_000_000
    assert (stats.cpu_periods, stats.cpu_throttled_periods, stats.cpu_throttled_ns) == (120, 37, 900_000_000)
    assert (stats.memory_usage, stats.memory_peak, stats.memory_limit) == (52428800, 67108864, 134217728)
    assert stats.oom_kills == 1
    assert (stats.pids_current, stats.pids_limit) == (7, None)
    assert (stats.io_read_bytes, stats.io_write_bytes) == (4097, 8192)


def test_unlimited_memory_and_no_peak_file(fake_root):
    d = fake_root / CGROUP.lstrip("/")
    (d / "memory.max").write_text("max\n")
    (d / "memory.peak").unlink()  # kernels before 5.19
    (d / "pids.max").write_text("64\n")
    stats = v2.V2Driver(fake_root).stats(CGROUP)
    assert stats.memory_limit is None
    assert stats.memory_peak == stats.memory_usage
    assert stats.pids_limit == 64


async def test_freeze_waits_for_the_kernel_to_report_frozen(fake_root):
    driver = v2.V2Driver(fake_root)
    d = fake_root / CGROUP.lstrip("/")

    async def kernel() -> None:  # the fake kernel finishes freezing a little later
        while (d / "cgroup.freeze").read_text().strip() != "1":
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        (d / "cgroup.events").write_text("populated 1\nfrozen 1\n")

    task = asyncio.create_task(kernel())
    await driver.freeze(CGROUP, timeout=2)
    await task
    assert driver.frozen(CGROUP)
    (d / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    await driver.thaw(CGROUP)
    assert (d / "cgroup.freeze").read_text() == "0"
    assert not driver.frozen(CGROUP)


async def test_freeze_times_out_when_the_kernel_never_freezes(fake_root):
    with pytest.raises(TimeoutError):
        await v2.V2Driver(fake_root).freeze(CGROUP, timeout=0.05)


def test_remove_takes_children_first_and_missing_is_fine(fake_root):
    driver = v2.V2Driver(fake_root)
    project = fake_root / "pcompose/proj"
    for path in project.rglob("*"):
        if path.is_file():
            path.unlink()  # a real cgroup dir holds only kernel files, which rmdir ignores
    driver.remove("/pcompose/proj")
    assert not project.exists()
    driver.remove("/pcompose/proj")
    with pytest.raises(ValueError):
        driver.remove("/")


def test_procs_and_supports(fake_root):
    driver = v2.V2Driver(fake_root)
    assert driver.procs(CGROUP) == [101, 102]
    assert driver.supports("blkio", "blkio.weight")  # io controller
    assert driver.supports("memory", "memory.max")
