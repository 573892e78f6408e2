"""A path resolved inside a volume and bind-mounted by its fd (runtime.safepath.bind), and the
copy of an image's dir that keeps owners and device nodes, on the real filesystem as root."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from runtime import mounts, safepath


def test_a_pinned_dir_stays_the_dir_that_was_resolved_when_its_path_is_swapped(state_root):
    volume = state_root / "volume"
    (volume / "appdata").mkdir(parents=True)
    (volume / "appdata" / "own").write_text("mine")
    host = state_root / "host"
    host.mkdir()
    (host / "secret").write_text("host-only")
    staging = state_root / "run" / "subpaths" / "c1" / "0"
    try:
        with safepath.opened(volume, "appdata", scope=safepath.BENEATH) as fd:
            safepath.bind(fd, staging)
        os.rename(volume / "appdata", volume / "old")
        (volume / "appdata").symlink_to(host)
        assert mounts.is_mounted(staging)
        assert sorted(p.name for p in staging.iterdir()) == ["own"]
        with safepath.opened(volume, "appdata", scope=safepath.BENEATH) as fd:
            safepath.bind(fd, staging)  # again: the old mount is replaced, not stacked
        raise AssertionError("a symlink out of the volume was followed")
    except safepath.Escape:
        pass
    finally:
        safepath.release(staging)
    assert not staging.exists() and not mounts.is_mounted(staging)
    assert (volume / "old" / "own").read_text() == "mine"  # unmounting deleted nothing
    safepath.release(staging)  # a missing one is fine


def test_a_pinned_file_and_a_repeated_bind_leave_one_mount(state_root):
    volume = state_root / "volume"
    volume.mkdir()
    (volume / "conf").write_text("v1")
    staging = state_root / "staging"
    try:
        for _ in range(2):
            with safepath.opened(volume, "conf", scope=safepath.BENEATH) as fd:
                safepath.bind(fd, staging)
        assert staging.read_text() == "v1"
        lines = [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines()
                 if f" {staging} " in ln]
        assert len(lines) == 1
    finally:
        safepath.release(staging)
    assert not staging.exists()


def test_copy_keeps_owners_and_makes_device_nodes_without_reading_them(state_root):
    src = state_root / "image" / "data"
    src.mkdir(parents=True)
    os.chown(src, 1000, 1000)
    (src / "owned").write_text("x")
    os.chown(src / "owned", 33, 33)
    (src / "link").symlink_to("/etc/shadow")
    os.chown(src / "link", 1000, 1000, follow_symlinks=False)
    os.mknod(src / "disk", stat.S_IFBLK | 0o660, os.makedev(8, 0))  # read, it would be the host's
    os.chmod(src / "disk", 0o660)
    dest = state_root / "volume"
    dest.mkdir()
    with safepath.opened(src, ".") as s, safepath.opened(dest, ".") as d:
        safepath.copy_tree(s, d)
    assert (dest.stat().st_uid, (dest / "owned").stat().st_uid) == (1000, 33)
    assert (dest / "link").lstat().st_uid == 1000 and os.readlink(dest / "link") == "/etc/shadow"
    disk = (dest / "disk").lstat()
    assert stat.S_ISBLK(disk.st_mode) and disk.st_rdev == os.makedev(8, 0)
    assert stat.S_IMODE(disk.st_mode) == 0o660
