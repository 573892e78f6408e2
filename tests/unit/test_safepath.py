"""Paths inside a root: what a hostile image or container can plant never leads pcompose to the host.

Every case runs twice: with the kernel's openat2 and with the module's own component walk,
which stands in where openat2 is missing; both must resolve alike."""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

import pytest

from runtime import safepath


@pytest.fixture(params=["openat2", "walk"], autouse=True)
def resolver(request, monkeypatch):
    monkeypatch.setitem(safepath._state, "openat2", request.param == "openat2")
    return request.param


@pytest.fixture
def host(tmp_path) -> Path:
    """A host dir outside the root with a file that nothing may read or change."""
    path = tmp_path / "host"
    path.mkdir()
    (path / "secret").write_text("host-only")
    (path / "passwd").write_text("ghost:x:7:7::/:/bin/sh\n")
    return path


@pytest.fixture
def root(tmp_path) -> Path:
    """An image's root: /etc/passwd, /data with a file, and symlinks an image may carry."""
    path = tmp_path / "root"
    (path / "etc").mkdir(parents=True)
    (path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (path / "data").mkdir()
    (path / "data" / "f").write_text("image")
    return path


def test_absolute_and_climbing_symlinks_resolve_inside_the_root(root, host):
    (root / "abs").symlink_to("/etc")
    (root / "climb").symlink_to("../" * 20 + "etc")
    (root / "data" / "up").symlink_to("../../../..")
    for path in ("/abs/passwd", "climb/passwd", "/../../etc/passwd", "/data/up/etc/passwd"):
        assert safepath.read_bytes(root, path) == b"root:x:0:0::/root:/bin/sh\n"
    (root / "hostdir").symlink_to(host)  # a link to where the host really has the file
    with pytest.raises(FileNotFoundError):
        safepath.read_bytes(root, "/hostdir/secret")
    with safepath.opened(root, "/climb/passwd") as fd:
        assert safepath.container_path(root, fd) == "/etc/passwd"
    with safepath.opened(root, "/data/up") as fd:
        assert safepath.container_path(root, fd) == "/"


def test_beneath_allows_symlinks_inside_and_refuses_any_way_out(root, host):
    (root / "data" / "inner").symlink_to("../etc")
    (root / "data" / "abs").symlink_to(str(host))
    (root / "data" / "climb").symlink_to("../..")
    assert safepath.read_bytes(root, "data/inner/passwd", scope=safepath.BENEATH).startswith(b"root")
    for path in ("abs/secret", "climb/host/secret", "../etc/passwd", "/f"):
        with pytest.raises(safepath.Escape) as caught:
            safepath.open_at(root / "data", path, scope=safepath.BENEATH)
        assert caught.value.errno == errno.EXDEV


def test_no_symlinks_and_no_follow(root):
    (root / "link").symlink_to("data")
    with pytest.raises(OSError) as caught:
        safepath.open_at(root, "link/f", symlinks=False)
    assert caught.value.errno == errno.ELOOP
    with safepath.opened(root, "link", follow=False) as fd:
        assert stat.S_ISLNK(os.fstat(fd).st_mode)
    (root / "loop").symlink_to("loop")
    with pytest.raises(OSError) as caught:
        safepath.open_at(root, "loop")
    assert caught.value.errno == errno.ELOOP


def test_open_file_refuses_fifos_and_dirs_without_opening_them_for_io(root):
    os.mkfifo(root / "etc" / "group")  # would block a reader forever
    with pytest.raises(OSError) as caught:
        safepath.read_bytes(root, "/etc/group")
    assert caught.value.errno == errno.EINVAL
    with pytest.raises(IsADirectoryError):
        safepath.read_bytes(root, "/data")
    (root / "big").write_bytes(b"x" * 100)
    with pytest.raises(OSError) as caught:
        safepath.read_bytes(root, "/big", limit=10)
    assert caught.value.errno == errno.EFBIG


def test_writes_land_inside_the_root_whatever_the_symlinks_say(root, host):
    (root / "out").symlink_to(str(host))  # the dir: resolved inside, where it does not exist
    with pytest.raises(FileNotFoundError):
        safepath.write_bytes(root, "/out/secret", b"pwned")
    (root / "data" / "name").symlink_to(str(host / "secret"))  # the file itself
    with pytest.raises(OSError):
        safepath.write_bytes(root, "/data/name", b"pwned")
    (root / "data" / "rel").symlink_to("../etc/passwd")
    safepath.write_bytes(root, "/data/rel", b"new\n")
    assert (root / "etc" / "passwd").read_text() == "new\n"
    safepath.write_bytes(root, "/data/made", b"made", mode=0o600)
    assert (root / "data" / "made").read_bytes() == b"made"
    assert stat.S_IMODE((root / "data" / "made").stat().st_mode) == 0o600
    assert (host / "secret").read_text() == "host-only"
    assert sorted(p.name for p in host.iterdir()) == ["passwd", "secret"]


def test_makedirs_through_symlinks_inside_the_root(root, host):
    (root / "link").symlink_to("/data")
    fd = safepath.makedirs(root, "/link/x/y")
    try:
        assert safepath.container_path(root, fd) == "/data/x/y"
    finally:
        os.close(fd)
    assert (root / "data" / "x" / "y").is_dir()
    (root / "away").symlink_to(str(host))
    with pytest.raises(FileNotFoundError):
        os.close(safepath.makedirs(root, "/away/new"))
    assert not (host / "new").exists()


def test_copy_tree_keeps_symlinks_as_symlinks_and_never_reads_through_them(root, host, tmp_path):
    data = root / "data"
    (data / "to-host").symlink_to(str(host))
    (data / "to-secret").symlink_to(str(host / "secret"))
    (data / "sub").mkdir(mode=0o750)
    (data / "sub" / "x").write_text("deep")
    os.chmod(data / "sub" / "x", 0o640)
    os.utime(data / "sub" / "x", (1_600_000_000, 1_600_000_000))
    os.mkfifo(data / "pipe")
    dest = tmp_path / "volume"
    dest.mkdir()
    (dest / "f").write_text("already there")
    with safepath.opened(root, "/data") as src, safepath.opened(dest, ".") as dst:
        copier = threading.Thread(target=safepath.copy_tree, args=(src, dst))
        copier.start()
        copier.join(timeout=30)  # a fifo that were read would block here
        assert not copier.is_alive()
    assert os.readlink(dest / "to-host") == str(host)
    assert os.readlink(dest / "to-secret") == str(host / "secret")
    assert (dest / "sub" / "x").read_text() == "deep"
    assert stat.S_IMODE((dest / "sub" / "x").stat().st_mode) == 0o640
    assert stat.S_IMODE((dest / "sub").stat().st_mode) == 0o750
    assert (dest / "sub" / "x").stat().st_mtime == 1_600_000_000
    assert stat.S_ISFIFO((dest / "pipe").lstat().st_mode)
    assert (dest / "f").read_text() == "already there"
    assert sorted(p.name for p in dest.iterdir()) == ["f", "pipe", "sub", "to-host", "to-secret"]
    assert sorted(p.name for p in host.iterdir()) == ["passwd", "secret"]
