"""Fixtures for build tests: a store with the busybox layer, the builder's places under a private
state root, run dir and cgroup parent, all removed afterwards."""

from __future__ import annotations

import pytest

from runtime import images
from runtime.build import snapshot
from runtime.cgroups import drivers
from runtime.images import unpack
from tests.support import oci_image


@pytest.fixture(scope="session")
def busybox_layer() -> oci_image.Layer:
    return oci_image.busybox_layer()


@pytest.fixture
def store(state_root) -> images.Store:
    return images.Store(state_root)


@pytest.fixture
def base(store, busybox_layer) -> str:
    """The busybox layer's chain id, unpacked in the store."""
    blob = store.write_blob(busybox_layer.blob)
    unpack.ensure_layer(store, busybox_layer.diff_id, busybox_layer.diff_id, store.blob_path(blob))
    return busybox_layer.diff_id


@pytest.fixture
def where(store, state_root, run_dir, unique):
    cgroup_parent = f"/pcompose-test-{unique}"
    yield snapshot.Where(store=store, tmp_dir=state_root / "build" / "tmp", runc_root=run_dir / "runc",
                         cgroup_parent=cgroup_parent)
    drivers.detect().remove(cgroup_parent)
    tmp = state_root / "build" / "tmp"
    leftovers = list(tmp.glob("*")) if tmp.exists() else []
    assert not leftovers, f"build temp dirs left: {leftovers}"
