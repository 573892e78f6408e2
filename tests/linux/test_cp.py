"""runtime.cp and runtime.tartree on the real filesystem as root: a stopped container's overlay
root entered by a child that imports nothing from it, a pid that is not the container's refused,
and tar streams landing beneath their destination only (hostile names, symlinks on the way,
hard links out, a symlink in place of a file, set-id bits and device nodes on the host), each
with openat2 and with safepath's walk."""

from __future__ import annotations

import importlib
import io
import os
import stat
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from runtime import cp, safepath, tartree


@pytest.fixture(params=["openat2", "walk"], autouse=True)
def resolver(request, monkeypatch):
    """Every case with the kernel's openat2 and with safepath's own walk (where it is missing),
    which inside a container's root must not need /proc either."""
    monkeypatch.setitem(safepath._state, "openat2", request.param == "openat2")
    return request.param


@pytest.fixture
def stopped(state_root):
    """A stopped container as runtime.cp sees it: an overlay root mounted at .../merged."""
    base = state_root / "rootfs" / "c1"
    lower = state_root / "lower"
    for d in (base / "upper", base / "work", base / "merged", lower / "etc"):
        d.mkdir(parents=True)
    (lower / "etc" / "hostname").write_text("c1\n")
    merged = base / "merged"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={base / 'upper'},workdir={base / 'work'}",
                    str(merged)], check=True)
    try:
        yield cp.Container("c1", str(merged))
    finally:
        subprocess.run(["umount", str(merged)], check=True)


@pytest.fixture
def host(state_root) -> Path:
    path = state_root / "host"
    path.mkdir()
    (path / "secret").write_text("host-only")
    return path


def test_a_module_planted_in_the_root_is_never_imported_inside_it(stopped):
    merged = Path(stopped.rootfs)
    for entry in sys.path:
        if entry.startswith("/"):
            planted = merged / entry.lstrip("/") / "pcompose_planted.py"
            planted.parent.mkdir(parents=True, exist_ok=True)
            planted.write_text("open('/pwned', 'w').write('ran')\n")

    def work(root: int, fds: int) -> None:
        importlib.import_module("pcompose_planted")

    with pytest.raises(cp.CopyError, match="no module is imported inside a container's root"):
        cp._result(stopped, *cp._spawn(stopped, work))
    assert not (merged / "pwned").exists()
    assert "pcompose_planted" not in sys.modules


def test_a_pid_that_is_not_the_containers_and_a_root_not_mounted_are_refused(stopped, state_root):
    impostor = cp.Container("c1", stopped.rootfs, pid=os.getpid())  # as a reused pid would be
    with pytest.raises(cp.CopyError, match="c1 is not running"):
        cp.info(impostor, "/etc/hostname", follow=False)
    bare = state_root / "bare"
    bare.mkdir()
    with pytest.raises(cp.CopyError, match="not mounted"):
        cp.info(cp.Container("c2", str(bare)), "/", follow=False)


def test_a_stopped_roots_symlinks_resolve_inside_it(stopped, host):
    merged = Path(stopped.rootfs)
    (merged / "out").symlink_to(host)
    (merged / "out2").symlink_to("../" * 12 + str(host).lstrip("/"))
    assert cp.info(stopped, "/out/secret", follow=True) == cp.PathInfo(False, parent=False)
    assert cp.info(stopped, "/out2", follow=False).link == "../" * 12 + str(host).lstrip("/")
    with pytest.raises(cp.CopyError, match="No such container:path: c1:/out2/x"):
        cp.copy_in(stopped, str(host / "secret"), cp.Placement("/out2/x", "y"), follow=False,
                   owner=None)
    source = host.parent / "src"
    source.write_text("mine")
    cp.copy_in(stopped, str(source), cp.Placement("/", "out"), follow=False, owner=(0, 0))
    assert (merged / "out").read_text() == "mine" and not (merged / "out").is_symlink()
    assert sorted(p.name for p in host.iterdir()) == ["secret"]


def stream(*members: tarfile.TarInfo, data: dict[str, bytes] | None = None) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            content = (data or {}).get(m.name)
            if content is not None:
                m.size = len(content)
            tar.addfile(m, io.BytesIO(content) if content is not None else None)
    out.seek(0)
    return out


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644,
           **attrs) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def land(dest: Path, source: io.BytesIO, landing: tartree.Landing = tartree.Landing(host=True)) -> list[str]:
    fd = os.open(dest, os.O_PATH | os.O_DIRECTORY)
    fds = tartree.proc_fds()
    try:
        return tartree.read(source, fd, fds, landing)
    finally:
        os.close(fds)
        os.close(fd)


@pytest.mark.parametrize("members, why", [
    ([member("../x")], "`..` leads outside"),
    ([member("a/../../x")], "`..` leads outside"),
    ([member("/x")], "an absolute name"),
    ([member("ln", tarfile.SYMTYPE, "/"), member("ln/x")], "a symlink on its way leads outside"),
    ([member("up", tarfile.SYMTYPE, "../.."), member("up/x")], "a symlink on its way leads outside"),
    ([member("hl", tarfile.LNKTYPE, "../secret")], "`..` leads outside"),
])
def test_members_leading_out_of_the_destination_are_refused(state_root, host, members, why):
    dest = state_root / "dest"
    dest.mkdir()
    with pytest.raises(tartree.Refused, match=why):
        land(dest, stream(*members, data={m.name: b"pwned" for m in members if m.isreg()}))
    assert sorted(p.name for p in host.iterdir()) == ["secret"]
    assert (host / "secret").read_text() == "host-only"
    assert not (state_root / "x").exists()


def test_a_symlink_already_in_place_is_replaced_never_written_through(state_root, host):
    dest = state_root / "dest"
    dest.mkdir()
    (dest / "f").symlink_to(host / "secret")
    (dest / "inner").symlink_to("sub")  # a symlink staying beneath the destination is followed
    land(dest, stream(member("f"), member("sub", tarfile.DIRTYPE, mode=0o755), member("inner/g"),
                      data={"f": b"new", "inner/g": b"g"}))
    assert (dest / "f").read_bytes() == b"new" and not (dest / "f").is_symlink()
    assert (dest / "sub" / "g").read_bytes() == b"g"
    assert (host / "secret").read_text() == "host-only"


def test_on_the_host_set_id_bits_are_dropped_and_device_nodes_skipped(state_root):
    dest = state_root / "dest"
    dest.mkdir()
    skipped = land(dest, stream(
        member("suid", mode=0o6755, uid=0, gid=0), member("disk", tarfile.BLKTYPE, devmajor=8),
        member("mem", tarfile.CHRTYPE, devmajor=1, devminor=1), member("pipe", tarfile.FIFOTYPE),
        data={"suid": b"#!/bin/sh\n"}))
    assert skipped == ["disk", "mem"]
    assert sorted(p.name for p in dest.iterdir()) == ["pipe", "suid"]
    assert stat.S_IMODE((dest / "suid").stat().st_mode) == 0o755
    inside = state_root / "inside"
    inside.mkdir()
    assert land(inside, stream(member("suid", mode=0o4755, uid=7, gid=8), member(
        "null", tarfile.CHRTYPE, devmajor=1, devminor=3), data={"suid": b"x"}),
        tartree.Landing(owner=None)) == []
    st = (inside / "suid").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o4755, 7, 8)
    assert stat.S_ISCHR((inside / "null").lstat().st_mode)


def test_a_tree_is_written_with_its_symlinks_as_symlinks_and_no_fifo_read(state_root, host):
    tree = state_root / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("deep")
    os.chmod(tree / "sub" / "f", 0o640)
    (tree / "to-host").symlink_to(host)
    (tree / "to-secret").symlink_to(host / "secret")
    os.mkfifo(tree / "pipe")  # would block a reader forever
    out = io.BytesIO()
    entry = os.open(tree, os.O_PATH | os.O_DIRECTORY)
    fds = tartree.proc_fds()
    writer = threading.Thread(target=tartree.write, args=(out, entry, "tree", fds))
    writer.start()
    writer.join(timeout=60)
    assert not writer.is_alive()
    os.close(entry)
    os.close(fds)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        found = {m.name: m for m in tar.getmembers()}
        assert sorted(found) == ["tree", "tree/pipe", "tree/sub", "tree/sub/f", "tree/to-host",
                                 "tree/to-secret"]
        assert found["tree/to-secret"].issym() and found["tree/to-secret"].linkname == str(host / "secret")
        assert found["tree/pipe"].isfifo() and found["tree/sub/f"].mode == 0o640
        assert tar.extractfile("tree/sub/f").read() == b"deep"
        assert b"host-only" not in out.getvalue()
