"""Pulling from a real registry (docker-registry on 127.0.0.1), pushed to with skopeo."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from runtime import images
from runtime.images import registry as registry_mod, store as store_mod
from tests.support import oci_image, registry
from tests.support.oci_image import LayerBuilder


@pytest.fixture
def layout(tmp_path):
    return tmp_path / "layout"


def push(reg, layout, layers, name, tag="v1"):
    oci_image.write_layout(layout, layers, tag)
    reg.push(layout, tag, f"{name}:{tag}")
    return f"{reg.host}/{name}:{tag}"


def nothing_half_written(store):
    assert list(store.ingest_dir.iterdir()) == []
    assert not list(store.layers_dir.glob(".tmp-*"))


async def test_pull_then_mount_a_root(store, roots, live_registry, layout, busybox_layer, unique):
    top = LayerBuilder().file("etc/motd", f"hello {unique}\n").whiteout("bin/vi").build()
    ref = push(live_registry, layout, [busybox_layer, top], f"{unique}/app")
    events = []
    record = await images.pull(store, ref, progress=events.append)
    assert record.references == (ref,)
    assert record.config.cmd == ("sh",)
    assert {e.status for e in events} >= {"Downloading", "Extracting", "Pull complete"}
    m = roots("c", record.chain_ids)
    assert Path(m.merged_dir, "etc/motd").read_text() == f"hello {unique}\n"
    assert Path(m.merged_dir, "bin/sh").exists() and not Path(m.merged_dir, "bin/vi").exists()
    assert images.resolve(store, ref) == record
    assert images.resolve(store, record.id[7:19]).id == record.id
    # a second pull finds every layer and downloads nothing
    again = []
    await images.pull(store, ref, progress=again.append)
    assert {e.status for e in again} == {"Already exists"}


async def test_two_images_share_their_base_layer(store, live_registry, tmp_path, busybox_layer, unique):
    a = push(live_registry, tmp_path / "a", [busybox_layer, LayerBuilder().file("a", "a").build()], f"{unique}/a")
    b = push(live_registry, tmp_path / "b", [busybox_layer, LayerBuilder().file("b", "b").build()], f"{unique}/b")
    ra = await images.pull(store, a)
    events = []
    rb = await images.pull(store, b, progress=events.append)
    assert ra.chain_ids[0] == rb.chain_ids[0]
    base_short = busybox_layer.digest[7:19]
    assert {e.status for e in events if e.layer == base_short} == {"Already exists"}
    assert len([p for p in store.layers_dir.iterdir() if p.name != "l"]) == 3
    assert store.blob_path(busybox_layer.digest).is_file()
    assert len(store.blob_digests()) == 2 * 2 + 3  # two manifests, two configs, three layer blobs


async def test_concurrent_pulls_of_one_image_store_it_once(store, live_registry, layout, busybox_layer, unique):
    ref = push(live_registry, layout, [busybox_layer], f"{unique}/same")
    first, second = await asyncio.gather(images.pull(store, ref), images.pull(store, ref))
    assert first == second
    assert len([p for p in store.layers_dir.iterdir() if p.name != "l"]) == 1
    nothing_half_written(store)


async def test_index_gives_the_host_platform(store, live_registry, layout, busybox_layer, unique):
    here = images.manifest.host().architecture
    other = "arm64" if here != "arm64" else "amd64"
    index_digest = oci_image.write_multiplatform_layout(layout, {
        other: [busybox_layer, LayerBuilder().file("arch", other).build()],
        here: [busybox_layer, LayerBuilder().file("arch", here).build()]}, tag="multi")
    live_registry.push(layout, "multi", f"{unique}/multi:multi", all_platforms=True)
    ref = f"{live_registry.host}/{unique}/multi:multi"
    record = await images.pull(store, ref)
    assert record.digest == index_digest and record.manifest_digest != index_digest
    assert record.config.architecture == here
    assert (store.layer_dir(record.chain_ids[-1]) / "diff/arch").read_text() == here
    chosen = await images.pull(store, f"{live_registry.host}/{unique}/multi@{index_digest}",
                               platform=images.Platform("linux", other))
    assert (store.layer_dir(chosen.chain_ids[-1]) / "diff/arch").read_text() == other
    with pytest.raises(images.manifest.ManifestError, match="s390x"):
        await images.pull(store, ref, platform=images.Platform("linux", "s390x"))


async def test_pull_by_digest(store, live_registry, layout, busybox_layer, unique):
    digest = oci_image.write_layout(layout, [busybox_layer], "v1")
    live_registry.push(layout, "v1", f"{unique}/pinned:v1")
    ref = f"{live_registry.host}/{unique}/pinned@{digest}"
    record = await images.pull(store, ref)
    assert record.digest == digest and images.resolve(store, ref).id == record.id


async def test_missing_image_is_a_clear_error_and_stores_nothing(store, live_registry, unique):
    with pytest.raises(registry_mod.NotFound, match=f"{unique}/nothing:latest not found"):
        await images.pull(store, f"{live_registry.host}/{unique}/nothing")
    assert store.read_refs() == {} and store.blob_digests() == set()


async def test_corrupted_blob_is_refused(store, live_registry, layout, busybox_layer, unique):
    top = LayerBuilder().file("data", unique * 100).build()
    ref = push(live_registry, layout, [busybox_layer, top], f"{unique}/corrupt")
    data = live_registry.blob_file(top.digest)
    blob = bytearray(data.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    data.write_bytes(bytes(blob))
    with pytest.raises(store_mod.DigestMismatch, match="hashes to"):
        await images.pull(store, ref)
    assert not store.has_blob(top.digest)
    assert store.read_refs() == {}
    assert not any(store.has_layer(c) for c in images.manifest.chain_ids((busybox_layer.diff_id, top.diff_id))[1:])
    nothing_half_written(store)


@pytest.fixture(scope="module")
def auth_registry():
    work = Path(tempfile.mkdtemp(prefix="pcompose-registry-"))
    try:
        with registry.running(work, user="alice", password="wonderland") as reg:
            yield reg
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def test_basic_auth_with_docker_config(store, auth_registry, layout, busybox_layer, unique, tmp_path,
                                            monkeypatch):
    ref = push(auth_registry, layout, [busybox_layer], f"{unique}/private")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    with pytest.raises(registry_mod.Unauthorized, match="pcompose login"):
        await images.pull(store, ref)
    images.auth.save(auth_registry.host, images.Credentials("alice", "wrong"))
    with pytest.raises(registry_mod.Unauthorized, match="login refused for user 'alice'"):
        await images.pull(store, ref)
    assert store.read_refs() == {} and store.blob_digests() == set()
    images.auth.save(auth_registry.host, images.Credentials("alice", "wonderland"))
    record = await images.pull(store, ref)
    assert record.references == (ref,)


async def test_login_checks_before_saving(auth_registry, tmp_path):
    config = tmp_path / "config.json"
    with pytest.raises(registry_mod.Unauthorized, match="login refused"):
        await images.login(auth_registry.host, images.Credentials("alice", "nope"), auth_config=str(config))
    assert not config.exists()
    await images.login(auth_registry.host, images.Credentials("alice", "wonderland"), auth_config=str(config))
    assert images.auth.load(auth_registry.host, config) == images.Credentials("alice", "wonderland")
    assert os.stat(config).st_mode & 0o077 == 0


def test_plain_http_only_for_loopback_and_configured_registries():
    options = registry_mod.Options(insecure=frozenset({"reg.lan:5000"}))
    assert options.scheme("127.0.0.1:5000") == "http"
    assert options.scheme("localhost:5000") == "http"
    assert options.scheme("reg.lan:5000") == "http"
    assert options.scheme("reg.lan:5001") == "https"
    assert options.scheme("ghcr.io") == "https"


@pytest.fixture(scope="module")
def token_registry():
    work = Path(tempfile.mkdtemp(prefix="pcompose-registry-"))
    try:
        with registry.running_with_tokens(work, "carol", "tokens") as pair:
            yield pair
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def test_bearer_token_auth(store, token_registry, layout, busybox_layer, unique, tmp_path):
    reg, tokens = token_registry
    ref = push(reg, layout, [busybox_layer], f"{unique}/tokened")
    config = tmp_path / "config.json"
    with pytest.raises(registry_mod.Unauthorized, match="pcompose login"):
        await images.pull(store, ref, auth_config=str(config))
    before = len(tokens.issued)
    record = await images.pull(store, ref, credentials=images.Credentials("carol", "tokens"))
    assert record.references == (ref,)
    assert len(tokens.issued) == before + 1  # one token for the whole pull, not one per request
    with pytest.raises(registry_mod.Unauthorized, match="login refused for user 'carol'"):
        await images.pull(store, ref, credentials=images.Credentials("carol", "wrong"))


async def test_docker_schema2_manifest(store, live_registry, layout, busybox_layer, unique):
    oci_image.write_layout(layout, [busybox_layer, LayerBuilder().file("v2s2", "yes").build()], "v1")
    live_registry.push(layout, "v1", f"{unique}/docker:v1", manifest_format="v2s2")
    record = await images.pull(store, f"{live_registry.host}/{unique}/docker:v1")
    kept = store.read_blob(record.manifest_digest)
    assert images.manifest.media_type_of(kept) == images.manifest.DOCKER_MANIFEST
    assert {layer.media_type for layer in record.layers} == {images.manifest.DOCKER_LAYER_GZIP}
    assert (store.layer_dir(record.chain_ids[-1]) / "diff/v2s2").read_text() == "yes"


def test_a_pull_killed_halfway_leaves_only_complete_content(store, live_registry, layout, busybox_layer, unique,
                                                            state_root):
    import hashlib
    import signal
    import subprocess
    import sys
    import time

    big = LayerBuilder().file("big.bin", os.urandom(24 << 20)).build()
    ref = push(live_registry, layout, [busybox_layer, big], f"{unique}/killed")
    code = ("import asyncio, sys; from runtime import images; "
            "asyncio.run(images.pull(images.Store(sys.argv[1]), sys.argv[2]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(state_root), ref],
                            cwd=Path(__file__).resolve().parents[3], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            if any(store.ingest_dir.iterdir()) or any(store.layers_dir.glob(".tmp-*")):
                break  # caught it writing: kill it now
            time.sleep(0.001)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the pull ended before it could be interrupted"
    for blob in store.blobs_dir.iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    for layer in store.layers_dir.iterdir():
        if len(layer.name) == 64:
            assert (layer / "complete").is_file()
    images.collect(store)
    nothing_half_written(store)
    record = asyncio.run(images.pull(store, ref))
    assert (store.layer_dir(record.chain_ids[-1]) / "diff/big.bin").stat().st_size == 24 << 20


async def test_ensure_follows_the_pull_policy(store, live_registry, layout, busybox_layer, unique):
    ref = f"{live_registry.host}/{unique}/policy:v1"
    with pytest.raises(store_mod.StoreError, match="pull_policy is never"):
        await images.ensure(store, ref, "never")
    with pytest.raises(store_mod.StoreError, match="does not build"):
        await images.ensure(store, ref, "build")
    with pytest.raises(ValueError, match="unknown pull_policy"):
        await images.ensure(store, ref, "sometimes")
    with pytest.raises(registry_mod.NotFound):
        await images.ensure(store, ref, "missing")
    first = push(live_registry, layout, [busybox_layer, LayerBuilder().file("v", "1").build()], f"{unique}/policy")
    assert first == ref
    one = await images.ensure(store, ref, "missing")
    # a new push under the same tag: `missing` keeps what is here, `always` fetches the new one
    push(live_registry, layout, [busybox_layer, LayerBuilder().file("v", "2").build()], f"{unique}/policy")
    assert (await images.ensure(store, ref, "missing")).id == one.id
    assert (await images.ensure(store, ref, "never")).id == one.id
    two = await images.ensure(store, ref, "always")
    assert two.id != one.id and (store.layer_dir(two.chain_ids[-1]) / "diff/v").read_text() == "2"


async def test_zstd_layers(store, live_registry, layout, busybox_layer, unique):
    oci_image.write_layout(layout, [busybox_layer, LayerBuilder().file("packed", "zstd").build()], "v1")
    live_registry.push(layout, "v1", f"{unique}/zstd:v1", compression="zstd")
    record = await images.pull(store, f"{live_registry.host}/{unique}/zstd:v1")
    # skopeo may reuse a gzip base blob the registry holds already; the new layer is zstd
    assert record.layers[-1].media_type == images.manifest.OCI_LAYER_ZSTD
    assert (store.layer_dir(record.chain_ids[-1]) / "diff/packed").read_text() == "zstd"
