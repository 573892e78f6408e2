"""Limits as written, against fake control files: a limit changed by hand is named and written
back; limits the container never set are neither compared nor written."""

from __future__ import annotations

from pathlib import Path

from runtime.cgroups import model, v1, v2, written

RES = model.Resources(memory_limit=64 << 20, memory_swap=128 << 20, cpus=0.5, pids_limit=20,
                      cpuset_cpus="0-1")


def _v1_tree(root: Path, path: str) -> v1.V1Driver:
    d = v1.V1Driver(root)
    values = {"memory.limit_in_bytes": str(64 << 20), "memory.memsw.limit_in_bytes": str(128 << 20),
              "memory.soft_limit_in_bytes": "9223372036854771712",
              "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "50000", "cpu.shares": "1024",
              "cpuset.cpus": "0,1", "pids.max": "20"}
    for name, value in values.items():
        folder = d.dir(name.split(".")[0], path)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(value + "\n")
    return d


def test_v1_as_written_is_no_drift_and_a_changed_limit_is_named_and_written_back(tmp_path):
    d = _v1_tree(tmp_path, "/pc/p/c")
    assert d.limits_drift("/pc/p/c", RES) == ""
    (d.dir("memory", "/pc/p/c") / "memory.limit_in_bytes").write_text(str(32 << 20))
    (d.dir("pids", "/pc/p/c") / "pids.max").write_text("max")
    assert d.limits_drift("/pc/p/c", RES) == "memory limit, pids limit changed by hand"
    d.write_limits("/pc/p/c", RES)
    assert d.limits_drift("/pc/p/c", RES) == ""
    assert (d.dir("pids", "/pc/p/c") / "pids.max").read_text() == "20"


def test_limits_not_set_are_left_to_the_kernel(tmp_path):
    d = _v1_tree(tmp_path, "/pc/p/c")
    (d.dir("cpu", "/pc/p/c") / "cpu.shares").write_text("2")
    assert d.limits_drift("/pc/p/c", RES) == ""  # RES sets no shares
    assert d.limits_drift("/pc/p/gone", RES) == ""  # a container whose cgroup went


def test_memory_is_compared_in_pages_and_cpusets_as_sets():
    assert written.Limit("m", "memory", "memory.limit_in_bytes", "10000").same(
        str(10000 // written.PAGE * written.PAGE))
    assert written.Limit("c", "cpuset", "cpuset.cpus", "0,1,2").same("0-2\n")


def test_v2_files(tmp_path):
    d = v2.V2Driver(tmp_path)
    folder = d.dir("/p/c")
    folder.mkdir(parents=True)
    for name, value in {"memory.max": str(64 << 20), "memory.swap.max": str(64 << 20),
                        "cpu.max": "50000 100000", "cpuset.cpus": "0-1", "pids.max": "20"}.items():
        (folder / name).write_text(value + "\n")
    assert d.limits_drift("/p/c", RES) == ""
    (folder / "cpu.max").write_text("max 100000\n")
    assert d.limits_drift("/p/c", RES) == "cpu quota changed by hand"
    d.write_limits("/p/c", RES)
    assert (folder / "cpu.max").read_text() == "50000 100000"
