"""cgroup limits on real containers: OOM kills, CPU throttling, pids, live updates, stats (cgroup v1)."""

from __future__ import annotations

import os
import subprocess

import pytest

from runtime.cgroups import compose as cgroups_compose, drivers, model as cgroups_model
from runtime.oci import exec as oci_exec, lifecycle, observe
from tests.linux.oci import helpers
from tests.support import cgroupfs, waiting

MiB = 1024 * 1024


async def test_main_process_past_its_memory_limit_is_oom_killed(lay, make):
    config = make(command=("dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"),
                  resources=cgroups_model.Resources(memory_limit=32 * MiB))
    status = await helpers.run_to_exit(lay, config)
    assert status.code == 137
    assert status.oom_killed


async def test_oom_killed_child_is_reported_although_the_container_exits_0(lay, make):
    script = "dd if=/dev/zero of=/dev/null bs=200M count=1; echo dd-exited-$?; exit 0"
    config = make(command=("sh", "-c", script), resources=cgroups_model.Resources(memory_limit=32 * MiB))
    status = await helpers.run_to_exit(lay, config)
    assert status.code == 0
    assert "dd-exited-137" in helpers.output(lay, config.name)
    assert status.oom_killed


async def test_a_container_within_its_limit_is_not_reported_oom(lay, make):
    config = make(command=("dd", "if=/dev/zero", "of=/dev/null", "bs=4M", "count=1"),
                  resources=cgroups_model.Resources(memory_limit=32 * MiB))
    status = await helpers.run_to_exit(lay, config)
    assert (status.code, status.oom_killed) == (0, False)


async def test_cpu_quota_shows_throttled_periods(lay, make):
    config = make(command=("sh", "-c", "while :; do :; done"), resources=cgroups_model.Resources(cpus=0.1))
    await lifecycle.run(lay, config)

    async def throttled():
        sample = await observe.stats(lay, config.name)
        return sample.cpu_throttled_periods > 0 and sample

    stats = await waiting.until(throttled, what="a throttled period")
    assert stats.cpu_periods > 0
    assert stats.cpu_throttled_periods > 0
    assert stats.cpu_throttled_ns > 0
    assert stats.cpu_usage_ns > 0
    cgroup = (await observe.get(lay, config.name)).cgroups_path
    assert cgroupfs.v1_file(cgroup, "cpu.cfs_quota_us").read_text().strip() == "10000"


async def test_pids_limit_stops_a_fork_bomb(lay, make):
    bomb = "bomb() { bomb | bomb & }; bomb; sleep 1000"
    config = make(command=("sh", "-c", bomb), resources=cgroups_model.Resources(pids_limit=32))
    await lifecycle.run(lay, config)
    cgroup = (await observe.get(lay, config.name)).cgroups_path
    events = cgroupfs.v1_file(cgroup, "pids.events")
    await waiting.until(lambda: int(events.read_text().split()[1]) > 0,
                        what="a fork refused by the pids limit")
    stats = await observe.stats(lay, config.name)
    assert stats.pids_limit == 32
    assert stats.pids_current <= 32
    status = await lifecycle.stop(lay, config.name, timeout=0.1)
    assert status is not None


async def test_limits_are_applied_and_changed_live(lay, make):
    resources = cgroups_model.Resources(memory_limit=64 * MiB, memory_reservation=32 * MiB, memory_swap=96 * MiB,
                                        cpu_shares=512, cpuset_cpus="0", pids_limit=100)
    config = make(command=("sleep", "1000"), resources=resources)
    pid = await lifecycle.run(lay, config)
    cgroup = (await observe.get(lay, config.name)).cgroups_path
    assert cgroup.startswith(lay.cgroup_parent.rstrip("/") + "/")  # absolute, under our parent

    def value(name: str) -> str:
        return cgroupfs.v1_file(cgroup, name).read_text().strip()

    assert value("memory.limit_in_bytes") == str(64 * MiB)
    assert value("memory.soft_limit_in_bytes") == str(32 * MiB)
    assert value("memory.memsw.limit_in_bytes") == str(96 * MiB)
    assert value("cpu.shares") == "512"
    assert value("cpuset.cpus") == "0"
    await lifecycle.update(lay, config.name, cgroups_model.Resources(memory_limit=80 * MiB, memory_swap=120 * MiB, pids_limit=50, cpus=0.5))
    stats = await observe.stats(lay, config.name)
    assert (stats.memory_limit, stats.pids_limit) == (80 * MiB, 50)
    assert value("cpu.cfs_quota_us") == "50000"
    observed = await observe.get(lay, config.name)
    assert (observed.status, observed.pid) == ("running", pid)  # not restarted


async def test_memory_stats_and_driver_freeze(lay, make):
    config = make(command=("sh", "-c", "dd if=/dev/zero of=/dev/shm/blob bs=1M count=20; sleep 1000"),
                  resources=cgroups_model.Resources(memory_limit=128 * MiB))
    await lifecycle.run(lay, config)

    async def written():
        sample = await observe.stats(lay, config.name)
        # dd's 20 MiB are in /dev/shm, charged to the container, once it has written them.
        return sample.memory_usage >= 20 * MiB and sample

    stats = await waiting.until(written, what="20 MiB written to /dev/shm")
    assert stats.memory_limit == 128 * MiB
    assert 20 * MiB <= stats.memory_usage <= stats.memory_peak
    assert stats.oom_kills == 0
    assert stats.pids_current in (1, 2)  # sh may exec its last command
    driver = drivers.detect()
    cgroup = (await observe.get(lay, config.name)).cgroups_path
    await driver.freeze(cgroup)
    assert driver.frozen(cgroup)
    assert cgroupfs.v1_file(cgroup, "freezer.state").read_text().strip() == "FROZEN"
    await driver.thaw(cgroup)
    assert not driver.frozen(cgroup)
    result = await oci_exec.run(lay, config.name, ["true"])
    assert result.exit_code == 0  # thawed: a new process runs


async def test_unsupported_blkio_weight_is_dropped_not_fatal(lay, make):
    driver = drivers.detect()
    config = make(command=("true",), resources=cgroups_model.Resources(blkio_weight=300))
    status = await helpers.run_to_exit(lay, config)
    assert status.code == 0
    cgroup = lay.cgroups_path(config.identity.project, config.name)
    weight = cgroupfs.v1_file(cgroup, "blkio.weight")
    if driver.supports("blkio", "blkio.weight"):
        assert weight.read_text().strip() == "300"
    else:  # this kernel's blkio has no weight (no CFQ/BFQ weight file): the limit is left out
        assert not weight.exists()


@pytest.fixture
def loop_device(tmp_path):
    """A block device of our own (a loop device over a file) to put per-device limits on."""
    backing = tmp_path / "disk.img"
    backing.write_bytes(b"\0" * (8 * MiB))
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True,
                            capture_output=True, text=True).stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


async def test_per_device_block_io_limits_reach_the_kernel(lay, make, loop_device):
    limits = cgroups_compose.blkio_devices([
        ("blkio_config.device_write_bps[0]", "write_bps", loop_device, "1mb"),
        ("blkio_config.device_read_iops[0]", "read_iops", loop_device, 100)])
    config = make(command=("sleep", "1000"), resources=cgroups_model.Resources(blkio_devices=limits))
    await lifecycle.run(lay, config)
    cgroup = (await observe.get(lay, config.name)).cgroups_path
    blkio = cgroupfs.v1_driver().dir("blkio", cgroup)
    info = os.stat(loop_device)
    device = f"{os.major(info.st_rdev)}:{os.minor(info.st_rdev)}"
    assert (blkio / "blkio.throttle.write_bps_device").read_text().split() == [device, str(MiB)]
    assert (blkio / "blkio.throttle.read_iops_device").read_text().split() == [device, "100"]


def test_a_per_device_limit_on_what_is_not_a_block_device_says_where():
    with pytest.raises(cgroups_compose.ResourceError,
                       match=r"blkio_config.device_read_bps\[0\].path: /dev/null is not a block device"):
        cgroups_compose.blkio_devices([("blkio_config.device_read_bps[0]", "read_bps",
                                        "/dev/null", "1mb")])
