"""Layers unpack once, keep what a file system holds, convert whiteouts, and never write outside the layer."""

from __future__ import annotations

import functools
import io
import os
import stat
import subprocess
import tarfile

import pytest

from runtime.images import manifest, unpack
from tests.support import oci_image
from tests.support.oci_image import LayerBuilder


def test_metadata_is_preserved(store, add_layer):
    layer = (LayerBuilder()
             .dir("srv", mode=0o750, uid=1000, gid=1000)
             .file("srv/run.sh", "#!/bin/sh\n", mode=0o4755, uid=0, gid=33)
             .hardlink("srv/run-again.sh", "srv/run.sh")
             .symlink("srv/current", "run.sh")
             .chardev("dev-null", 1, 3)
             .fifo("pipe")
             .build())
    diff = store.layer_dir(add_layer(layer)) / "diff"
    srv = os.stat(diff / "srv")
    assert (stat.S_IMODE(srv.st_mode), srv.st_uid, srv.st_gid) == (0o750, 1000, 1000)
    run = os.stat(diff / "srv/run.sh")
    assert (stat.S_IMODE(run.st_mode), run.st_uid, run.st_gid) == (0o4755, 0, 33)
    assert run.st_mtime == 1700000000
    assert os.stat(diff / "srv/run-again.sh").st_ino == run.st_ino and run.st_nlink == 2
    assert os.readlink(diff / "srv/current") == "run.sh"
    dev = os.lstat(diff / "dev-null")
    assert stat.S_ISCHR(dev.st_mode) and (os.major(dev.st_rdev), os.minor(dev.st_rdev)) == (1, 3)
    assert stat.S_ISFIFO(os.lstat(diff / "pipe").st_mode)


def test_xattrs_are_preserved(store, add_layer):
    b = LayerBuilder()
    info = tarfile.TarInfo("cap-file")
    info.size = 2
    info.pax_headers = {"SCHILY.xattr.user.origin": "layer", "SCHILY.xattr.trusted.overlay.opaque": "y"}
    b.tar.addfile(info, io.BytesIO(b"hi"))
    diff = store.layer_dir(add_layer(b.build())) / "diff"
    assert os.getxattr(diff / "cap-file", "user.origin") == b"layer"
    # a layer may not speak to overlayfs itself
    with pytest.raises(OSError):
        os.getxattr(diff / "cap-file", "trusted.overlay.opaque")


def test_whiteouts_become_overlay_whiteouts(store, add_layer):
    layer = LayerBuilder().dir("etc").whiteout("etc/motd").dir("var/cache").opaque("var/cache").build()
    diff = store.layer_dir(add_layer(layer)) / "diff"
    wh = os.lstat(diff / "etc/motd")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == os.makedev(0, 0)
    assert not (diff / "etc/.wh.motd").exists()
    assert os.getxattr(diff / "var/cache", "trusted.overlay.opaque") == b"y"
    assert not (diff / "var/cache/.wh..wh..opq").exists()


def test_a_layer_is_unpacked_once(store, add_layer):
    layer = LayerBuilder().file("a", "1").build()
    chain = add_layer(layer)
    marker = store.layer_dir(chain) / "diff" / "a"
    before = os.stat(marker).st_ino
    assert add_layer(layer) == chain
    assert os.stat(marker).st_ino == before
    assert {p.name for p in store.layers_dir.iterdir()} == {"l", chain[7:]}


@pytest.mark.parametrize("build, fault", [
    (lambda b: b.file("../escape", "x"), "'..'"),
    (lambda b: b.file("ok/../../escape", "x"), "'..'"),
    (lambda b: b.file("/etc/escape", "x"), "absolute"),
    (lambda b: b.symlink("evil", "/tmp").file("evil/escape", "x"), "symlink"),
    (lambda b: b.symlink("evil", "../../../../tmp").dir("evil/sub"), "symlink"),
    (lambda b: b.dir("d").symlink("d/up", "/").whiteout("d/up/escape"), "symlink"),
    (lambda b: b.hardlink("passwd", "../../../../etc/passwd"), "'..'"),
    (lambda b: b.hardlink("passwd", "/etc/passwd"), "not in this layer"),
    (lambda b: b.symlink("evil", "/etc").hardlink("pw", "evil/passwd"), "symlink"),
    (lambda b: b.dir("d").file("d/.wh...", ""), "whiteout of '..'"),
    (lambda b: b.file(".wh..", ""), "whiteout of '.'"),
])
def test_hostile_layers_are_refused_and_leave_nothing(store, build, fault):
    layer = build(LayerBuilder()).build()
    chain = manifest.chain_ids((layer.diff_id,))[-1]
    blob = store.write_blob(layer.blob)
    with pytest.raises(unpack.UnsafeLayer, match=fault):
        unpack.ensure_layer(store, chain, layer.diff_id, store.blob_path(blob))
    assert not store.has_layer(chain) and not store.layer_dir(chain).exists()
    assert [p.name for p in store.layers_dir.iterdir()] == ["l"]
    assert not os.path.exists("/tmp/escape") and not os.path.exists("/etc/escape")


def test_wrong_diff_id_is_refused(store):
    layer = LayerBuilder().file("a", "1").build()
    blob = store.write_blob(layer.blob)
    wrong = "sha256:" + "0" * 64
    with pytest.raises(unpack.LayerError, match="hashes to"):
        unpack.ensure_layer(store, wrong, wrong, store.blob_path(blob))
    assert not store.layer_dir(wrong).exists()


def test_garbage_is_not_a_layer(store):
    blob = store.write_blob(b"\x1f\x8b" + b"not really gzip" * 10)
    chain = "sha256:" + "1" * 64
    with pytest.raises(unpack.LayerError):
        unpack.ensure_layer(store, chain, chain, store.blob_path(blob))
    assert [p.name for p in store.layers_dir.iterdir()] == ["l"]


def _sparse(tmp_path) -> bytes:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "big", "wb") as f:
        f.truncate(1 << 30)
    subprocess.run(["tar", "--sparse", "-C", str(src), "-cf", str(tmp_path / "s.tar"), "big"], check=True)
    return (tmp_path / "s.tar").read_bytes()


def _long_header() -> bytes:
    builder = LayerBuilder()
    info = tarfile.TarInfo("f")
    info.pax_headers = {"comment": "x" * (2 << 20)}
    builder.tar.addfile(info)
    return builder.build().tar


@pytest.mark.parametrize("make, limits, fault", [
    # 1 GiB of holes in a 10 KiB tar: the files' apparent size counts
    (_sparse, unpack.Limits(max_size=16 << 20), "entry 'big' takes its files past 16.0 MiB"),
    (lambda tmp: LayerBuilder().file("a", bytes(8 << 20)).build().tar, unpack.Limits(max_size=4 << 20),
     "past 4.0 MiB"),
    (lambda tmp: functools.reduce(lambda b, i: b.file(str(i), ""), range(50), LayerBuilder()).build().tar,
     unpack.Limits(max_entries=40), "more than 40 entries"),
    (lambda tmp: _long_header(), unpack.Limits(), "extended tar header of 2.0 MiB"),
])
def test_layers_past_their_limits_are_refused_and_leave_nothing(store, tmp_path, make, limits, fault):
    tar = make(tmp_path)
    diff_id = manifest.digest_of(tar)
    blob = store.write_blob(oci_image.layer_from_tar(tar).blob)
    with pytest.raises(unpack.LayerTooLarge, match=fault):
        unpack.ensure_layer(store, diff_id, diff_id, store.blob_path(blob), limits)
    assert [p.name for p in store.layers_dir.iterdir()] == ["l"]
    assert list((store.layers_dir / "l").iterdir()) == []


def test_the_stream_itself_is_bounded(store):
    """Bytes past the end of the tar are hashed too: a gzip of endless zeros stops at the limit."""
    tar = LayerBuilder().file("a", "1").build().tar + bytes(8 << 20)
    diff_id = manifest.digest_of(tar)
    blob = store.write_blob(oci_image.layer_from_tar(tar).blob)
    with pytest.raises(unpack.LayerTooLarge, match="its tar expands past 4.0 MiB"):
        unpack.ensure_layer(store, diff_id, diff_id, store.blob_path(blob), unpack.Limits(max_size=4 << 20))
    assert [p.name for p in store.layers_dir.iterdir()] == ["l"]
