"""Fixtures for image tests: a store on the state root, roots that are always unmounted, a live registry."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from runtime import images, rootfs
from runtime.images import unpack
from tests.support import oci_image, registry


@pytest.fixture
def store(state_root):
    return images.Store(state_root)


@pytest.fixture
def roots(state_root, unique):
    """prepare(name, chain_ids) -> Mounts; every root made here is unmounted and removed afterwards."""
    made: list[str] = []

    def prepare(name: str, chain_ids) -> rootfs.Mounts:
        made.append(f"{unique}-{name}")
        return rootfs.prepare(state_root, made[-1], chain_ids)

    yield prepare
    failures = []
    for cid in made:  # every root, even if one of them cannot be removed
        try:
            rootfs.remove(state_root, cid)
        except Exception as err:  # noqa: BLE001
            failures.append(f"{cid}: {err}")
    assert not failures, failures


@pytest.fixture
def add_layer(store):
    """Unpack a test Layer on top of `parent` (a chain id or None); returns its chain id."""
    from runtime.images import manifest

    def add(layer: oci_image.Layer, parent: str | None = None) -> str:
        chain = manifest.digest_of(f"{parent} {layer.diff_id}".encode()) if parent else layer.diff_id
        blob = store.write_blob(layer.blob)
        unpack.ensure_layer(store, chain, layer.diff_id, store.blob_path(blob))
        return chain
    return add


@pytest.fixture(scope="session")
def busybox_layer():
    return oci_image.busybox_layer()


@pytest.fixture(scope="module")
def live_registry():
    """An anonymous docker-registry on 127.0.0.1 for the module; stopped by PID afterwards."""
    work = Path(tempfile.mkdtemp(prefix="pcompose-registry-"))
    try:
        with registry.running(work) as reg:
            yield reg
    finally:
        shutil.rmtree(work, ignore_errors=True)
