"""Named volumes of the local driver, on the real filesystem and with real mounts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runtime import volumes


def mounted_fstype(path: Path) -> str | None:
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1] == str(path):
            return fields[2]
    return None


@pytest.fixture
def vol_root(state_root):
    yield state_root
    # Whatever a failing test left mounted is unmounted here, so nothing leaks.
    for line in Path("/proc/self/mountinfo").read_text().splitlines()[::-1]:
        point = line.split()[4]
        if point.startswith(str(state_root) + "/"):
            subprocess.run(["umount", "-l", point], check=False)


def test_volume_is_created_once_and_keeps_its_data(vol_root):
    spec = volumes.VolumeSpec("demo_site", labels=(("com.docker.compose.project", "demo"),))
    v = volumes.ensure(vol_root, spec)
    (v.mountpoint / "index.html").write_text("hello")
    again = volumes.ensure(vol_root, spec)
    assert again.mountpoint == v.mountpoint
    assert (again.mountpoint / "index.html").read_text() == "hello"
    assert [x.name for x in volumes.list_all(vol_root)] == ["demo_site"]
    assert volumes.get(vol_root, "demo_site").label("com.docker.compose.project") == "demo"


def test_remove_deletes_data_and_a_missing_volume_is_success(vol_root):
    v = volumes.ensure(vol_root, volumes.VolumeSpec("gone"))
    (v.mountpoint / "f").write_text("x")
    assert volumes.remove(vol_root, "gone") is True
    assert not v.mountpoint.exists()
    assert volumes.remove(vol_root, "gone") is False
    assert volumes.list_all(vol_root) == []


def test_tmpfs_driver_opts_mount_a_tmpfs_with_its_size(vol_root):
    spec = volumes.VolumeSpec("scratch", driver_opts=(("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=4m")))
    v = volumes.ensure(vol_root, spec)
    assert mounted_fstype(v.mountpoint) == "tmpfs"
    assert os.statvfs(v.mountpoint).f_blocks * os.statvfs(v.mountpoint).f_frsize == 4 * 1024 * 1024
    volumes.ensure(vol_root, spec)  # already mounted: not mounted twice
    assert sum(1 for l in Path("/proc/mounts").read_text().splitlines() if str(v.mountpoint) in l) == 1
    volumes.remove(vol_root, "scratch")
    assert mounted_fstype(v.mountpoint) is None


def test_bind_driver_opts_show_the_host_directory_and_removal_keeps_it(vol_root, tmp_path):
    host_dir = tmp_path / "data"
    host_dir.mkdir()
    (host_dir / "keep.txt").write_text("precious")
    spec = volumes.VolumeSpec("bound", driver_opts=(("type", "none"), ("o", "bind"), ("device", str(host_dir))))
    v = volumes.ensure(vol_root, spec)
    assert (v.mountpoint / "keep.txt").read_text() == "precious"
    volumes.remove(vol_root, "bound")
    assert (host_dir / "keep.txt").read_text() == "precious"


def test_bad_input_is_refused_and_changes_nothing(vol_root):
    with pytest.raises(volumes.VolumeError, match="invalid volume name"):
        volumes.ensure(vol_root, volumes.VolumeSpec("../escape"))
    with pytest.raises(volumes.VolumeError, match="driver 'nfs-magic' is not supported"):
        volumes.ensure(vol_root, volumes.VolumeSpec("x", driver="nfs-magic"))
    with pytest.raises(volumes.VolumeError, match="not a directory"):
        volumes.ensure(vol_root, volumes.VolumeSpec(
            "y", driver_opts=(("o", "bind"), ("device", "/nonexistent/dir"))))
    assert not (vol_root / "volumes" / "x").exists()
