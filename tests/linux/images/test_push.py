"""push to a live docker-registry: blobs the registry lacks go up (whole or in chunks), then the
manifest byte for byte; a second push sends nothing again; credentials from login's store."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import urllib.request
from pathlib import Path

import pytest

from reconciler import cli
from runtime import images
from runtime.images import auth, push, registry
from runtime.images import store as store_mod
from tests.support import oci_image
from tests.support import registry as test_registry
from tests.support.oci_image import LayerBuilder


@pytest.fixture
def local_image(store: images.Store, tmp_path: Path, busybox_layer, unique) -> images.ImageRecord:
    extra = LayerBuilder().file("etc/app", unique).build()
    archive = oci_image.write_docker_archive(tmp_path / "img.tar", [busybox_layer, extra], [f"{unique}:1"])
    (record,) = images.load(store, archive)
    return record


def _tag(store: images.Store, record: images.ImageRecord, ref: str) -> None:
    store.update_refs({ref: store_mod.RefEntry(record.manifest_digest)})


def _remote_manifest(host: str, repo: str, tag: str) -> tuple[bytes, str]:
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{tag}",
                                 headers={"Accept": images.manifest.ACCEPT})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read(), resp.headers["Docker-Content-Digest"]


def test_push_then_pull_elsewhere_gives_the_same_image(store, local_image, live_registry, unique, tmp_path):
    ref = f"{live_registry.host}/{unique}/app:1"
    _tag(store, local_image, ref)
    seen: list[push.Progress] = []
    pushed = asyncio.run(push.push(store, ref, progress=seen.append))
    assert pushed.digest == local_image.manifest_digest and pushed.uploaded == 3  # 2 layers + config
    data, digest = _remote_manifest(live_registry.host, f"{unique}/app", "1")
    assert digest == local_image.manifest_digest and data == store.read_blob(local_image.manifest_digest)
    assert {p.status for p in seen} >= {"Preparing", "Pushing", "Pushed"}

    again: list[push.Progress] = []
    assert asyncio.run(push.push(store, ref, progress=again.append)).uploaded == 0
    assert {p.status for p in again if p.status != "Preparing"} == {"Layer already exists"}

    other = images.Store(tmp_path / "other-root")
    pulled = asyncio.run(images.pull(other, ref))
    assert pulled.id == local_image.id and pulled.manifest_digest == local_image.manifest_digest


def test_large_blobs_go_up_in_chunks(store, local_image, live_registry, unique, tmp_path, monkeypatch):
    monkeypatch.setattr(push, "MONOLITHIC_MAX", 1024)
    monkeypatch.setattr(push, "CHUNK", 64 << 10)
    ref = f"{live_registry.host}/{unique}/chunked:2"
    _tag(store, local_image, ref)
    seen: list[push.Progress] = []
    asyncio.run(push.push(store, ref, progress=seen.append))
    biggest = max(layer.size for layer in local_image.layers)
    assert biggest > 64 << 10
    steps = [p for p in seen if p.status == "Pushing" and p.total == biggest]
    assert len(steps) > 2  # one report per chunk
    pulled = asyncio.run(images.pull(images.Store(tmp_path / "other-root"), ref))
    assert pulled.manifest_digest == local_image.manifest_digest


def test_missing_image_is_named(store, live_registry, unique):
    with pytest.raises(push.PushError, match="no such image"):
        asyncio.run(push.push(store, f"{live_registry.host}/{unique}/none:1"))


@pytest.fixture(scope="module")
def auth_registry():
    work = Path(tempfile.mkdtemp(prefix="pcompose-registry-"))
    try:
        with test_registry.running(work, user="bob", password="builder") as reg:
            yield reg
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_push_uses_login_credentials(store, local_image, auth_registry, unique, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    ref = f"{auth_registry.host}/{unique}/private:1"
    _tag(store, local_image, ref)
    with pytest.raises(registry.Unauthorized, match="pcompose login"):
        asyncio.run(push.push(store, ref))
    auth.save(auth_registry.host, auth.Credentials("bob", "wrong"))
    with pytest.raises(registry.Unauthorized, match="login refused"):
        asyncio.run(push.push(store, ref))
    auth.save(auth_registry.host, auth.Credentials("bob", "builder"))
    assert asyncio.run(push.push(store, ref)).digest == local_image.manifest_digest


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_push_verb_pushes_the_built_services_images(capsys, store, local_image, live_registry, unique,
                                                    tmp_path, state_root, monkeypatch):
    ref = f"{live_registry.host}/{unique}/web:1"
    _tag(store, local_image, ref)
    project = tmp_path / "proj"
    project.mkdir()
    (project / "Dockerfile").write_text("FROM busybox\n")
    (project / "compose.yaml").write_text(
        "services:\n"
        f"  web:\n    build: .\n    image: {ref}\n"
        "  cache:\n    image: busybox:latest\n")
    monkeypatch.chdir(project)
    code, out, err = run(capsys, "--root", str(state_root), "push")
    assert code == 0, err
    assert _remote_manifest(live_registry.host, f"{unique}/web", "1")[1] == local_image.manifest_digest
    assert f"The push refers to repository [{live_registry.host}/{unique}/web]" in out
    assert f"1: digest: {local_image.manifest_digest} size:" in out
    assert "cache  Skipped" in out  # busybox:latest is pulled, not this stack's to push

    code, out, err = run(capsys, "--root", str(state_root), "push", "web")
    assert code == 0 and out.count("Layer already exists") == 3
    code, out, err = run(capsys, "--root", str(state_root), "push", "nope")
    assert code == 1 and "no such service: nope" in err


def test_push_verb_stops_at_a_failure_unless_asked_not_to(capsys, live_registry, unique, tmp_path,
                                                          state_root, monkeypatch):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "compose.yaml").write_text(
        f"services:\n  web:\n    build: .\n    image: {live_registry.host}/{unique}/never-built:1\n")
    monkeypatch.chdir(project)
    code, _, err = run(capsys, "--root", str(state_root), "push")
    assert code == 1 and "never-built:1: no such image here" in err
    code, _, err = run(capsys, "--root", str(state_root), "push", "--ignore-push-failures")
    assert code == 0 and "no such image here" in err
