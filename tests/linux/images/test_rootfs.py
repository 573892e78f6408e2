"""A container's root is an overlay of its image's layers: deletions hide, writes stay private, many layers fit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime import rootfs
from tests.support.oci_image import LayerBuilder


def mounted(path: str) -> bool:
    return any(line.split()[1] == path for line in Path("/proc/mounts").read_text().splitlines())


def test_upper_layers_hide_deleted_files_and_replaced_dirs(add_layer, roots, busybox_layer):
    base = add_layer(busybox_layer)
    mid = add_layer(LayerBuilder().dir("etc/conf.d").file("etc/conf.d/old", "old").file("etc/motd", "hi").build(), base)
    top = add_layer(LayerBuilder().whiteout("etc/motd").dir("etc/conf.d").opaque("etc/conf.d")
                    .file("etc/conf.d/new", "new").build(), mid)
    m = roots("c", (base, mid, top))
    merged = Path(m.merged_dir)
    assert mounted(m.merged_dir)
    assert not (merged / "etc/motd").exists()
    assert sorted(os.listdir(merged / "etc/conf.d")) == ["new"]
    assert (merged / "bin/busybox").is_file() and (merged / "etc/passwd").read_text().startswith("root:")


def test_writes_go_to_the_container_upper_only(add_layer, roots, store):
    base = add_layer(LayerBuilder().file("etc/hostname", "image").build())
    a = roots("a", (base,))
    b = roots("b", (base,))
    Path(a.merged_dir, "etc/hostname").write_text("changed")
    Path(a.merged_dir, "etc/hostname.new").write_text("x")
    assert Path(a.upper_dir, "etc/hostname").read_text() == "changed"
    assert Path(b.merged_dir, "etc/hostname").read_text() == "image"
    assert (store.layer_dir(base) / "diff/etc/hostname").read_text() == "image"


def test_report_matches_docker_inspect_graph_driver(add_layer, roots, store, state_root, unique):
    base = add_layer(LayerBuilder().file("a", "1").build())
    top = add_layer(LayerBuilder().file("b", "2").build(), base)
    m = roots("x", (base, top))
    data = m.graph_driver_data()
    assert data["LowerDir"] == f"{store.layer_dir(top)}/diff:{store.layer_dir(base)}/diff"
    assert data["UpperDir"] == str(state_root / "rootfs" / f"{unique}-x" / "upper")
    assert data["WorkDir"] == str(state_root / "rootfs" / f"{unique}-x" / "work")
    assert rootfs.describe(state_root, f"{unique}-x") == m
    assert store.layers_in_use() == {base, top}


def test_prepare_and_remove_repeat_safely(add_layer, state_root, unique):
    base = add_layer(LayerBuilder().file("a", "1").build())
    cid = f"{unique}-r"
    try:
        first = rootfs.prepare(state_root, cid, (base,))
        assert rootfs.prepare(state_root, cid, (base,)) == first
        assert sum(line.split()[1] == first.merged_dir
                   for line in Path("/proc/mounts").read_text().splitlines()) == 1
    finally:
        rootfs.remove(state_root, cid)
    rootfs.remove(state_root, cid)
    assert not mounted(first.merged_dir) and not Path(first.merged_dir).exists()
    assert rootfs.describe(state_root, cid) is None


def test_one_hundred_layers_mount(add_layer, roots, busybox_layer):
    chain = [add_layer(busybox_layer)]
    for i in range(99):
        chain.append(add_layer(LayerBuilder().file(f"layer/{i:03}", str(i)).build(), chain[-1]))
    absolute = ":".join(f"/var/lib/pcompose-test/x/layers/{c[7:]}/diff" for c in chain)
    assert len(absolute) > os.sysconf("SC_PAGE_SIZE")  # the case the short names exist for
    m = roots("many", tuple(chain))
    assert len(os.listdir(Path(m.merged_dir) / "layer")) == 99
    assert len(m.lower_dirs) == 100


def test_missing_layer_or_bad_id_is_refused_and_mounts_nothing(state_root, unique):
    with pytest.raises(rootfs.RootfsError, match="not unpacked"):
        rootfs.prepare(state_root, f"{unique}-m", ("sha256:" + "e" * 64,))
    with pytest.raises(rootfs.RootfsError, match="invalid container id"):
        rootfs.prepare(state_root, "../escape", ())
    assert not (state_root / "rootfs" / f"{unique}-m" / "merged").exists()


def test_more_layers_than_short_names_fit_in_a_page(add_layer, roots):
    chain = [add_layer(LayerBuilder().file("base", "b").build())]
    for i in range(329):
        chain.append(add_layer(LayerBuilder().file(f"layer/{i:03}", str(i)).whiteout(f"layer/{i - 1:03}").build()
                               if i % 2 else LayerBuilder().file(f"layer/{i:03}", str(i)).build(), chain[-1]))
    short = ":".join(c[7:19] for c in chain)
    assert len(short) > os.sysconf("SC_PAGE_SIZE")
    m = roots("deep", tuple(chain))
    names = os.listdir(Path(m.merged_dir) / "layer")
    # each odd layer deletes the file of the layer below; the last layer (328) is even and stays
    assert len(names) == 165 and {"327", "328"} <= set(names) and "326" not in names and "000" not in names
    assert Path(m.merged_dir, "base").read_text() == "b"
