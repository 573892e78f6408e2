"""docker's rules for removing, tagging and pruning images, on a real store with the users given."""

from __future__ import annotations

import pytest

from runtime import images
from runtime.images import gc
from tests.support import oci_image
from tests.support.oci_image import LayerBuilder


@pytest.fixture
def loaded(store, tmp_path):
    """One image named a:1 and a:2 (one repository, two tags), of two layers; its record."""
    layers = [LayerBuilder().file("base", "base").build(), LayerBuilder().file("top", "top").build()]
    [record] = images.load(store, oci_image.write_docker_archive(tmp_path / "a.tar", layers, ["a:1", "a:2"]))
    return record


def running(record, container: str = "c1") -> dict:
    return {record.id: (gc.Use(container, True),)}


def stopped(record, container: str = "c1") -> dict:
    return {record.id: (gc.Use(container, False),)}


def test_a_name_of_several_only_untags_even_in_use(store, loaded):
    removal = gc.remove_image(store, "a:2", users=running(loaded))
    assert removal.untagged == ("docker.io/library/a:2",) and not removal.deleted
    assert store.resolve("a:1").id == loaded.id


def test_the_last_name_of_an_image_in_use_needs_force(store, loaded):
    gc.remove_image(store, "a:2")
    with pytest.raises(gc.ImageInUse, match=r'^conflict: unable to remove repository reference "a:1" '
                       rf"\(must force\) - container c1 is using its referenced image {loaded.id[7:19]}$"):
        gc.remove_image(store, "a:1", users=stopped(loaded))
    # forced under a running container: untagged, kept without a name
    removal = gc.remove_image(store, "a:1", force=True, users=running(loaded))
    assert removal.untagged == ("docker.io/library/a:1",) and not removal.deleted
    [kept] = store.list_images()
    assert kept.id == loaded.id and all(gc.is_dangling_key(k) for k in kept.references)
    # a name makes it an image with a name again
    gc.tag(store, loaded.id[7:19], "b:1")
    assert store.resolve("b:1").references == ("docker.io/library/b:1",)


def test_an_id_follows_dockers_conflicts(store, loaded):
    short = loaded.id[7:19]
    with pytest.raises(gc.ImageInUse, match=rf"unable to delete {short} \(cannot be forced\) - image is "
                       "being used by running container c1"):
        gc.remove_image(store, short, force=True, users=running(loaded))
    with pytest.raises(gc.ImageInUse, match="must be forced.*referenced in multiple repositories"):
        gc.remove_image(store, short, users={})
    gc.remove_image(store, "a:2", users={})
    with pytest.raises(gc.ImageInUse, match="must be forced.*used by stopped container c1"):
        gc.remove_image(store, short, users=stopped(loaded))
    removal = gc.remove_image(store, short, force=True, users=stopped(loaded))
    assert removal.deleted and removal.untagged == ("docker.io/library/a:1",)
    report = gc.collect(store)
    assert set(report.layers) == set(loaded.chain_ids) and loaded.id in report.blobs
    assert store.list_images() == [] and report.freed_bytes > 0


def test_tag_moves_a_name_and_refuses_a_digest(store, loaded, tmp_path):
    [other] = images.load(store, oci_image.write_docker_archive(
        tmp_path / "o.tar", [LayerBuilder().file("o", "o").build()], ["other:1"]))
    assert gc.tag(store, "other:1", "a:2") == "docker.io/library/a:2"
    assert store.resolve("a:2").id == other.id and store.resolve("a:1").id == loaded.id
    with pytest.raises(images.StoreError, match="digest"):
        gc.tag(store, "a:1", "x@sha256:" + "0" * 64)
    with pytest.raises(gc.ImageNotFound, match="no such image: absent"):
        gc.tag(store, "absent", "x:1")


def test_prune_takes_what_no_container_uses(store, loaded, tmp_path):
    [unnamed] = images.load(store, oci_image.write_docker_archive(
        tmp_path / "u.tar", [LayerBuilder().file("u", "u").build()], []))
    assert [r.image.id for r in gc.prune(store, users={unnamed.id: (gc.Use("c", False),)})] == []
    assert [r.image.id for r in gc.prune(store, users={})] == [unnamed.id]
    assert gc.prune(store, all_images=True, users=stopped(loaded)) == []
    gc.collect(store)
    usage = gc.usage(store, {loaded.id})
    assert usage.reclaimable == 0 and usage.size == sum(i.size for i in usage.images) > 0
    assert gc.usage(store, set()).reclaimable == usage.size
    [removal] = gc.prune(store, all_images=True, users={})
    assert removal.deleted and removal.untagged == ("docker.io/library/a:1", "docker.io/library/a:2")
