"""Images from files (docker save archives, OCI archives, rootfs tars) and removal of what nothing uses."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from runtime import images
from runtime.images import archive, gc
from tests.support import oci_image
from tests.support.oci_image import LayerBuilder


def test_docker_archive_loads_with_its_tags(store, roots, tmp_path, busybox_layer):
    top = LayerBuilder().file("etc/motd", "from docker save\n").build()
    path = oci_image.write_docker_archive(tmp_path / "img.tar", [busybox_layer, top], ["web:1.0", "web:latest"])
    [record] = images.load(store, path)
    assert set(record.references) == {"docker.io/library/web:1.0", "docker.io/library/web:latest"}
    assert images.resolve(store, "web:1.0").id == record.id
    m = roots("c", record.chain_ids)
    assert Path(m.merged_dir, "etc/motd").read_text() == "from docker save\n"
    assert Path(m.merged_dir, "bin/busybox").is_file()


def test_oci_archive_loads_by_its_name_annotation(store, tmp_path, busybox_layer):
    layout = tmp_path / "layout"
    oci_image.write_layout(layout, [busybox_layer], tag="registry.example/team/tool:2")
    [record] = images.load(store, oci_image.write_oci_archive(tmp_path / "oci.tar", layout))
    assert record.references == ("registry.example/team/tool:2",)
    assert store.has_layer(record.chain_ids[0])


def test_oci_archive_without_a_name_loads_untagged(store, tmp_path, busybox_layer):
    layout = tmp_path / "layout"
    oci_image.write_layout(layout, [busybox_layer], tag="latest")
    [record] = images.load(store, oci_image.write_oci_archive(tmp_path / "oci.tar", layout))
    assert record.references == (record.id,)
    assert images.resolve(store, record.id[7:19]) == record


def test_import_makes_a_one_layer_image(store, roots, tmp_path, busybox_layer):
    rootfs_tar = tmp_path / "rootfs.tar"
    rootfs_tar.write_bytes(busybox_layer.tar)
    record = images.import_rootfs(store, rootfs_tar, "imported/busybox:v1")
    assert record.references == ("docker.io/imported/busybox:v1",)
    assert record.chain_ids == (busybox_layer.diff_id,)
    assert record.config.os == "linux"
    m = roots("i", record.chain_ids)
    assert Path(m.merged_dir, "etc/passwd").read_text().startswith("root:")


def test_import_applies_changes_and_keeps_the_message(store, tmp_path, busybox_layer):
    import json

    rootfs_tar = tmp_path / "rootfs.tar"
    rootfs_tar.write_bytes(busybox_layer.tar)
    record = images.import_rootfs(store, rootfs_tar, "imported/changed:v1", message="nightly",
                                  changes=('ENTRYPOINT ["/bin/sh", "-c"]', "CMD echo $A", "ENV A=1 B=two",
                                           "EXPOSE 8080", "WORKDIR /srv", "USER app", "LABEL tier=web"))
    cfg = record.config
    assert cfg.entrypoint == ("/bin/sh", "-c") and cfg.cmd == ("/bin/sh", "-c", "echo $A")
    assert cfg.env[1:] == ("A=1", "B=two") and cfg.env[0].startswith("PATH=")
    assert cfg.exposed_ports == ("8080/tcp",) and cfg.working_dir == "/srv" and cfg.user == "app"
    assert cfg.labels == (("tier", "web"),)
    [history] = json.loads(store.read_blob(record.id))["history"]
    assert history["comment"] == "nightly"
    plain = images.import_rootfs(store, rootfs_tar, "imported/plain:v1")
    assert json.loads(store.read_blob(plain.id))["history"][0]["comment"] == "Imported from rootfs.tar"


def test_import_refuses_a_bad_change_and_stores_nothing(store, tmp_path, busybox_layer):
    rootfs_tar = tmp_path / "rootfs.tar"
    rootfs_tar.write_bytes(busybox_layer.tar)
    with pytest.raises(images.changes.ChangeError, match="EXPOSE"):
        images.import_rootfs(store, rootfs_tar, "x:1", changes=("EXPOSE nope",))
    assert store.read_refs() == {} and store.blob_digests() == set()


@pytest.mark.parametrize("content, fault", [
    (b"not a tar at all", "not a readable tar"),
    (None, "neither a docker-archive"),
])
def test_unusable_files_are_refused(store, tmp_path, content, fault):
    path = tmp_path / "bad.tar"
    if content is None:
        with tarfile.open(path, "w") as tar:
            info = tarfile.TarInfo("README")
            tar.addfile(info, io.BytesIO(b""))
    else:
        path.write_bytes(content)
    with pytest.raises(archive.ArchiveError, match=fault):
        images.load(store, path)
    assert store.read_refs() == {}


def test_archive_with_hostile_layer_is_refused(store, tmp_path):
    evil = LayerBuilder().symlink("x", "/etc").file("x/pwned", "1").build()
    path = oci_image.write_docker_archive(tmp_path / "evil.tar", [evil], ["evil:1"])
    with pytest.raises(images.unpack.UnsafeLayer):
        images.load(store, path)
    assert store.read_refs() == {}
    assert not Path("/etc/pwned").exists()


def test_removal_frees_only_what_nothing_uses(store, tmp_path, busybox_layer):
    a = LayerBuilder().file("a", "a").build()
    b = LayerBuilder().file("b", "b").build()
    images.load(store, oci_image.write_docker_archive(tmp_path / "a.tar", [busybox_layer, a], ["a:1", "a:alias"]))
    images.load(store, oci_image.write_docker_archive(tmp_path / "b.tar", [busybox_layer, b], ["b:1"]))
    base = busybox_layer.diff_id
    # an id naming several tags needs force; a name only untags
    ra = images.resolve(store, "a:1")
    with pytest.raises(gc.ImageInUse, match="referenced in multiple repositories"):
        images.remove_image(store, ra.id)
    assert images.remove_image(store, "a:alias").untagged == ("docker.io/library/a:alias",)
    assert images.collect(store).blobs == ()
    assert images.remove_image(store, "a:1").untagged == ("docker.io/library/a:1",)
    report = images.collect(store)
    assert set(report.layers) == {ra.chain_ids[1]}
    assert store.has_layer(base) and store.has_blob(busybox_layer.diff_id)
    assert not store.has_blob(ra.id) and not store.has_blob(a.diff_id)
    assert not (store.layers_dir / "l" / ra.chain_ids[1][7:19]).exists()
    images.remove_image(store, "b:1")
    images.collect(store)
    assert store.blob_digests() == set() and store.layer_ids() == set()
    with pytest.raises(gc.ImageNotFound, match="no such image: b:1"):
        images.remove_image(store, "b:1")


def test_image_used_by_a_container_is_kept(store, roots, tmp_path, busybox_layer):
    [record] = images.load(store, oci_image.write_docker_archive(tmp_path / "a.tar", [busybox_layer], ["used:1"]))
    roots("user", record.chain_ids)
    with pytest.raises(gc.ImageInUse, match="must force"):
        images.remove_image(store, "used:1")
    images.remove_image(store, "used:1", force=True)
    images.collect(store)
    assert store.has_layer(record.chain_ids[0])


@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
def test_archives_written_by_skopeo_load(store, roots, tmp_path, busybox_layer, transport):
    import subprocess
    layout = tmp_path / "layout"
    oci_image.write_layout(layout, [busybox_layer, LayerBuilder().file("etc/which", transport).build()], "v1")
    path = tmp_path / "out.tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{layout}:v1", f"{transport}:{path}:skopeo/made:v1"],
                   check=True, capture_output=True)
    [record] = images.load(store, path)
    assert record.references == ("docker.io/skopeo/made:v1",)
    m = roots("s", record.chain_ids)
    assert Path(m.merged_dir, "etc/which").read_text() == transport
