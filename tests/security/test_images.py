"""Hostile image archives through `pcompose image load` and pulls: documents of the wrong shape,
decompression and sparse-file bombs, names that leave the archive; and `image import --change`.

Each refusal is one line and exit 1, no traceback, and leaves no image and no layer behind."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import subprocess
import tarfile
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.e2e import conftest as e2e
from tests.e2e.conftest import Stack
from tests.support import oci_image, registry, waiting
from tests.support.oci_image import LayerBuilder

TINY = LayerBuilder().dir("etc").file("etc/hello", "hi\n").build()
GOOD_CONFIG = json.loads(oci_image.config_for([TINY]))
GOOD_DOCKER = [{"Config": "cfg.json", "RepoTags": ["hostile:1"], "Layers": ["l/layer.tar"]}]
DEFAULT = object()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def raw(data: object) -> bytes:
    return data if isinstance(data, bytes) else json.dumps(data).encode()


def write_tar(path: Path, entries: list[tuple]) -> Path:
    """entries: ("file", name, bytes) | ("dir", name) | ("symlink", name, target) | ("link", name, target)."""
    kinds = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "link": tarfile.LNKTYPE}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, *rest in entries:
            info = tarfile.TarInfo(name)
            info.type = kinds[kind]
            info.mode = 0o755 if kind == "dir" else 0o644
            data = rest[0] if kind == "file" else b""
            if kind in ("symlink", "link"):
                info.linkname = rest[0]
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def docker_archive(path: Path, manifest: object = DEFAULT, config: object = DEFAULT,
                   layer: bytes = TINY.tar) -> Path:
    return write_tar(path, [("file", "manifest.json", raw(GOOD_DOCKER if manifest is DEFAULT else manifest)),
                            ("file", "cfg.json", raw(GOOD_CONFIG if config is DEFAULT else config)),
                            ("dir", "l"), ("file", "l/layer.tar", layer)])


def with_config(**fields) -> dict:
    doc = copy.deepcopy(GOOD_CONFIG)
    doc["config"].update(fields)
    return doc


def oci_parts(config: object = DEFAULT) -> tuple[dict, dict, dict[str, bytes]]:
    """(index, manifest, blobs) of a one-layer OCI image named hostile/oci:1, for a case to spoil."""
    config_data = raw(GOOD_CONFIG if config is DEFAULT else config)
    blobs = {sha(config_data): config_data, TINY.digest: TINY.blob}
    manifest = {"schemaVersion": 2, "mediaType": oci_image.OCI_MANIFEST,
                "config": {"mediaType": oci_image.OCI_CONFIG, "digest": sha(config_data), "size": len(config_data)},
                "layers": [{"mediaType": oci_image.OCI_LAYER_GZIP, "digest": TINY.digest, "size": len(TINY.blob)}]}
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": oci_image.OCI_MANIFEST, "digest": "", "size": 0,
         "annotations": {"org.opencontainers.image.ref.name": "hostile/oci:1"}}]}
    return index, manifest, blobs


def oci_archive(path: Path, index: object, manifest: object, blobs: dict[str, bytes]) -> Path:
    data = raw(manifest)
    blobs = {**blobs, sha(data): data}
    if isinstance(index, dict) and isinstance(index.get("manifests"), list):
        for entry in index["manifests"]:
            if isinstance(entry, dict) and entry.get("digest") == "":
                entry.update(digest=sha(data), size=len(data))
    entries = [("file", "oci-layout", b'{"imageLayoutVersion": "1.0.0"}'), ("file", "index.json", raw(index)),
               ("dir", "blobs"), ("dir", "blobs/sha256")]
    entries += [("file", f"blobs/sha256/{d[7:]}", b) for d, b in blobs.items()]
    return write_tar(path, entries)


def run(stack: Stack, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(stack.argv(*args), cwd=stack.dir, capture_output=True, text=True, timeout=120,
                          env={**Stack.env(), **(env or {})}, stdin=subprocess.DEVNULL)


def image_names(stack: Stack) -> list[str]:
    rows = json.loads(stack.pc("images", "--format", "json").stdout)
    return sorted(f"{r['Repository']}:{r['Tag']}" for r in rows)


def layer_state(stack: Stack) -> tuple[list[str], list[str]]:
    layers = stack.root / "layers"
    return sorted(p.name for p in layers.iterdir()), sorted(p.name for p in (layers / "l").iterdir())


def refused(stack: Stack, path: Path, env: dict[str, str] | None = None) -> str:
    """Load `path`; it must fail as a user error, one line, with nothing new in the store."""
    before = layer_state(stack)
    done = run(stack, "image", "load", "-i", str(path), env=env)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pcompose: error: "), done.stderr
    assert image_names(stack) == ["busybox:latest"]
    assert layer_state(stack) == before  # no layer dir, half-made or whole, and no short link
    return lines[0]


@pytest.fixture(scope="module")
def shared_stack(busybox_archive) -> Stack:
    """One machine for the matrices of wrong shapes: each case must store nothing, and checks so."""
    made = e2e.make_stack(busybox_archive, "t" + uuid.uuid4().hex[:7])
    try:
        yield made
    finally:
        e2e.remove_stack(made)


DOCKER_SHAPES = {
    "manifest-number": (42, DEFAULT, "manifest.json: expected a list"),
    "manifest-null": (None, DEFAULT, "manifest.json: expected a list"),
    "manifest-object": (GOOD_DOCKER[0], DEFAULT, "manifest.json: expected a list"),
    "manifest-not-json": (b"[{", DEFAULT, "not valid JSON"),
    "entry-null": ([None], DEFAULT, r"manifest.json\[0\]: expected an object"),
    "entry-list": ([[]], DEFAULT, r"manifest.json\[0\]: expected an object"),
    "no-config": ([{"Layers": ["l/layer.tar"]}], DEFAULT, "needs Config and Layers"),
    "no-layers": ([{"Config": "cfg.json"}], DEFAULT, "needs Config and Layers"),
    "config-number": ([{"Config": 7, "Layers": ["l/layer.tar"]}], DEFAULT, r"Config: expected a string"),
    "layers-string": ([{"Config": "cfg.json", "Layers": "l/layer.tar"}], DEFAULT, "Layers: expected a list"),
    "layers-of-numbers": ([{"Config": "cfg.json", "Layers": [1]}], DEFAULT, r"Layers\[0\]: expected a string"),
    "repotags-string": ([{**GOOD_DOCKER[0], "RepoTags": "hostile:1"}], DEFAULT, "RepoTags: expected a list"),
    "repotags-of-numbers": ([{**GOOD_DOCKER[0], "RepoTags": [5]}], DEFAULT, r"RepoTags\[0\]: expected a string"),
    "config-file-missing": ([{**GOOD_DOCKER[0], "Config": "nope.json"}], DEFAULT, "'nope.json' is missing"),
    "image-config-list": (DEFAULT, [], "image config is not a JSON object"),
    "image-config-null": (DEFAULT, None, "image config is not a JSON object"),
    "image-config-not-json": (DEFAULT, b"{]", "not valid JSON"),
    "config-section-string": (DEFAULT, {**GOOD_CONFIG, "config": "x"}, "config.config: expected an object"),
    "env-string": (DEFAULT, with_config(Env="PATH=/bin"), "Env: expected a list of strings, found a string"),
    "env-of-numbers": (DEFAULT, with_config(Env=[1]), r"Env\[0\]: expected a string"),
    "cmd-number": (DEFAULT, with_config(Cmd=3), "Cmd: expected a list of strings"),
    "cmd-with-null": (DEFAULT, with_config(Cmd=["sh", None]), r"Cmd\[1\]: expected a string"),
    "entrypoint-object": (DEFAULT, with_config(Entrypoint={}), "Entrypoint: expected a list"),
    "workdir-list": (DEFAULT, with_config(WorkingDir=["/"]), "WorkingDir: expected a string"),
    "user-number": (DEFAULT, with_config(User=0), "User: expected a string"),
    "ports-list": (DEFAULT, with_config(ExposedPorts=["80/tcp"]), "ExposedPorts: expected an object"),
    "volumes-string": (DEFAULT, with_config(Volumes="/data"), "Volumes: expected an object"),
    "labels-of-numbers": (DEFAULT, with_config(Labels={"a": 1}), r"Labels\['a'\]: expected a string"),
    "healthcheck-string": (DEFAULT, with_config(Healthcheck="true"), "Healthcheck: expected an object"),
    "health-test-string": (DEFAULT, with_config(Healthcheck={"Test": "true"}), "Test: expected a list"),
    "stopsignal-number": (DEFAULT, with_config(StopSignal=9), "StopSignal: expected a string"),
    "os-number": (DEFAULT, {**GOOD_CONFIG, "os": 1}, "config.os: expected a string"),
    "rootfs-list": (DEFAULT, {**GOOD_CONFIG, "rootfs": []}, "config.rootfs: expected an object"),
    "diff-ids-string": (DEFAULT, {**GOOD_CONFIG, "rootfs": {"diff_ids": TINY.diff_id}}, "diff_ids: expected a list"),
    "diff-id-number": (DEFAULT, {**GOOD_CONFIG, "rootfs": {"diff_ids": [7]}}, r"diff_ids\[0\]: expected a digest"),
    "diff-id-not-sha256": (DEFAULT, {**GOOD_CONFIG, "rootfs": {"diff_ids": ["md5:00"]}}, "only sha256"),
    "layer-count-differs": (DEFAULT, {**GOOD_CONFIG, "rootfs": {"diff_ids": []}}, "1 layers, but its config lists 0"),
}


@pytest.mark.parametrize("manifest, config, fault", DOCKER_SHAPES.values(), ids=DOCKER_SHAPES.keys())
def test_docker_archive_of_the_wrong_shape_is_one_line_and_stores_nothing(shared_stack, tmp_path, manifest, config,
                                                                          fault):
    line = refused(shared_stack, docker_archive(tmp_path / "bad.tar", manifest, config))
    assert "bad.tar" in line
    assert re.search(fault, line), line


def _spoil(case: str) -> tuple[object, object, dict[str, bytes]]:
    index, manifest, blobs = oci_parts()
    entry = index["manifests"][0]
    if case == "index-list":
        index = [entry]
    elif case == "index-null":
        index = None
    elif case == "manifests-string":
        index["manifests"] = "x"
    elif case == "manifests-entry-null":
        index["manifests"] = [None]
    elif case == "entry-digest-number":
        entry["digest"] = 5
    elif case == "entry-size-string":
        manifest = raw(manifest)
        entry.update(digest=sha(manifest), size="12")
    elif case == "entry-platform-string":
        entry["platform"] = "linux/amd64"
    elif case == "annotations-list":
        entry["annotations"] = ["x"]
    elif case == "annotation-name-number":
        entry["annotations"] = {"org.opencontainers.image.ref.name": 1}
    elif case == "manifest-null":
        manifest = None
    elif case == "manifest-config-null":
        manifest["config"] = None
    elif case == "manifest-config-string":
        manifest["config"] = "sha256:00"
    elif case == "manifest-layers-object":
        manifest["layers"] = {}
    elif case == "layer-without-digest":
        del manifest["layers"][0]["digest"]
    elif case == "media-type-number":
        manifest["mediaType"] = 2
    elif case == "index-in-an-index":
        inner = raw({"schemaVersion": 2, "mediaType": oci_image.OCI_INDEX, "manifests": [
            {"mediaType": oci_image.OCI_INDEX, "digest": "sha256:" + "0" * 64, "size": 1,
             "platform": {"os": "linux", "architecture": "amd64"}}]})
        outer = {"schemaVersion": 2, "mediaType": oci_image.OCI_INDEX, "manifests": [
            {"mediaType": oci_image.OCI_INDEX, "digest": sha(inner), "size": len(inner),
             "platform": {"os": "linux", "architecture": "amd64"}}]}
        blobs = {**blobs, sha(inner): inner, "sha256:" + "0" * 64: inner}
        manifest = outer
        entry["mediaType"] = oci_image.OCI_INDEX
    elif case == "config-env-string":
        index, manifest, blobs = oci_parts(with_config(Env="A=1"))
    elif case == "no-images":
        index["manifests"] = []
    return index, manifest, blobs


OCI_SHAPES = {
    "index-list": "index is not a JSON object",
    "index-null": "index is not a JSON object",
    "manifests-string": "index.manifests: expected a list",
    "manifests-entry-null": r"manifests\[0\]: expected a descriptor",
    "entry-digest-number": "digest: expected a digest string",
    "entry-size-string": "size: expected a size",
    "entry-platform-string": "platform: expected an object",
    "annotations-list": "annotations: expected an object",
    "annotation-name-number": "expected a string, found a number",
    "manifest-null": "not a JSON object",
    "manifest-config-null": "manifest has no config",
    "manifest-config-string": "manifest.config: expected a descriptor",
    "manifest-layers-object": "manifest.layers: expected a list",
    "layer-without-digest": r"manifest.layers\[0\]: has no digest",
    "media-type-number": "mediaType: expected a string",
    "index-in-an-index": "expected an image manifest, found an index",
    "config-env-string": "Env: expected a list of strings, found a string",
    "no-images": "holds no image",
}


@pytest.mark.parametrize("case, fault", OCI_SHAPES.items(), ids=OCI_SHAPES.keys())
def test_oci_archive_of_the_wrong_shape_is_one_line_and_stores_nothing(shared_stack, tmp_path, case, fault):
    line = refused(shared_stack, oci_archive(tmp_path / "bad.tar", *_spoil(case)))
    assert re.search(fault, line), line


def _sparse_layer(tmp_path: Path, tar_format: str) -> bytes:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "big", "wb") as f:
        f.truncate(1 << 30)  # 1 GiB of hole
    out = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", f"--format={tar_format}", "-C", str(src), "-cf", str(out), "big"], check=True)
    data = out.read_bytes()
    assert len(data) < 64 << 10  # a small download...
    return data


@pytest.mark.parametrize("tar_format", ["gnu", "posix"])
def test_sparse_bomb_is_refused_under_the_limit(stack, tmp_path, tar_format):
    layer = _sparse_layer(tmp_path, tar_format)  # ... that would be a 1 GiB file
    config = {**GOOD_CONFIG, "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}
    path = docker_archive(tmp_path / "bomb.tar", config=config, layer=layer)
    line = refused(stack, path, env={"PCOMPOSE_LAYER_MAX_SIZE": "64m"})
    assert "past 64.0 MiB" in line and "PCOMPOSE_LAYER_MAX_SIZE" in line, line


def test_gzip_bomb_is_refused_under_the_limit(stack, tmp_path):
    builder = LayerBuilder()
    builder.tar.addfile(_info("zeros", 256 << 20), _Zeros(256 << 20))
    layer = builder.build()  # 256 MiB of zeros, gzipped to about 1 MiB
    config = {**GOOD_CONFIG, "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}}
    path = docker_archive(tmp_path / "bomb.tar", config=config, layer=layer.blob)
    line = refused(stack, path, env={"PCOMPOSE_LAYER_MAX_SIZE": "32m"})
    assert "past 32.0 MiB" in line, line


def test_entry_count_bomb_is_refused_under_the_limit(stack, tmp_path):
    builder = LayerBuilder().dir("many")
    for i in range(3000):
        builder.file(f"many/{i}", b"")
    layer = builder.build()
    config = {**GOOD_CONFIG, "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}}
    path = docker_archive(tmp_path / "bomb.tar", config=config, layer=layer.tar)
    line = refused(stack, path, env={"PCOMPOSE_LAYER_MAX_ENTRIES": "1000"})
    assert "more than 1000 entries" in line and "PCOMPOSE_LAYER_MAX_ENTRIES" in line, line


def test_a_bad_limit_setting_is_one_line(stack, tmp_path):
    line = refused(stack, docker_archive(tmp_path / "ok.tar"), env={"PCOMPOSE_LAYER_MAX_SIZE": "lots"})
    assert "PCOMPOSE_LAYER_MAX_SIZE='lots'" in line


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o644
    return info


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readinto(self, buf) -> int:
        n = min(len(buf), self.left)
        buf[:n] = bytes(n)
        self.left -= n
        return n


def _dot_tar(src: Path, out: Path) -> Path:
    """What `tar -C dir -cf x.tar .` writes: every name starts with ./ and the first entry is ./ itself."""
    subprocess.run(["tar", "-C", str(src), "-cf", str(out), "."], check=True)
    assert "./manifest.json" in tarfile.open(out).getnames() or "./index.json" in tarfile.open(out).getnames()
    return out


def test_docker_archive_with_dot_slash_names_loads(stack, tmp_path, busybox_archive):
    src = tmp_path / "unpacked"
    src.mkdir()
    with tarfile.open(busybox_archive) as tar:
        tar.extractall(src, filter="data")
    manifest = json.loads((src / "manifest.json").read_text())
    manifest[0]["RepoTags"] = ["dotted/docker:1"]
    (src / "manifest.json").write_text(json.dumps(manifest))
    done = stack.pc("image", "load", "-i", str(_dot_tar(src, tmp_path / "dot.tar")))
    assert done.stdout == "Loaded image: dotted/docker:1\n"
    assert image_names(stack) == ["busybox:latest", "dotted/docker:1"]


def test_oci_archive_with_dot_slash_names_loads(stack, tmp_path):
    layout = tmp_path / "layout"
    oci_image.write_layout(layout, [TINY], tag="dotted/oci:2")
    done = stack.pc("image", "load", "-i", str(_dot_tar(layout, tmp_path / "dot.tar")))
    assert done.stdout == "Loaded image: dotted/oci:2\n"
    assert image_names(stack) == ["busybox:latest", "dotted/oci:2"]


ESCAPES = {
    "dot-dot-after-normalizing": (
        lambda: [("file", "./x/../../manifest.json", raw(GOOD_DOCKER))], "leaves the archive"),
    "absolute-name": (lambda: [("file", "/manifest.json", raw(GOOD_DOCKER))], "absolute path"),
    "config-outside": (
        lambda: [("file", "./manifest.json", raw([{**GOOD_DOCKER[0], "Config": "./l/../../cfg.json"}]))],
        "leaves the archive"),
    "symlinked-dir": (
        lambda: [("file", "manifest.json", raw(GOOD_DOCKER)), ("file", "cfg.json", raw(GOOD_CONFIG)),
                 ("dir", "other"), ("symlink", "l", "other"), ("file", "l/layer.tar", TINY.tar)],
        "lies below a symlink"),
    "symlink-out": (lambda: [("file", "manifest.json", raw(GOOD_DOCKER)), ("symlink", "cfg.json", "/etc/passwd")],
                    "absolute path"),
    "symlink-up": (lambda: [("file", "manifest.json", raw(GOOD_DOCKER)), ("dir", "l"),
                            ("symlink", "l/layer.tar", "../../etc/passwd")], "leaves the archive"),
    "hardlink-up": (lambda: [("file", "manifest.json", raw(GOOD_DOCKER)), ("link", "cfg.json", "../cfg.json")],
                    "leaves the archive"),
}


@pytest.mark.parametrize("entries, fault", ESCAPES.values(), ids=ESCAPES.keys())
def test_names_that_leave_the_archive_are_refused(shared_stack, tmp_path, entries, fault):
    line = refused(shared_stack, write_tar(tmp_path / "escape.tar", entries()))
    assert fault in line, line


def test_docker_save_links_between_layers_are_followed(stack, tmp_path):
    """Older `docker save` writes a repeated layer as a symlink to the first copy."""
    top = LayerBuilder().file("etc/top", "top\n").build()
    config = oci_image.config_for([TINY, top, TINY])
    manifest = [{"Config": "cfg.json", "RepoTags": ["linked:1"],
                 "Layers": ["a/layer.tar", "b/layer.tar", "c/layer.tar"]}]
    path = write_tar(tmp_path / "linked.tar", [
        ("file", "manifest.json", raw(manifest)), ("file", "cfg.json", config), ("dir", "a"),
        ("file", "a/layer.tar", TINY.tar), ("dir", "b"), ("file", "b/layer.tar", top.tar), ("dir", "c"),
        ("symlink", "c/layer.tar", "../a/layer.tar")])
    stack.pc("image", "load", "-i", str(path))
    assert image_names(stack) == ["busybox:latest", "linked:1"]


def test_import_applies_changes_and_up_runs_the_imported_command(stack, tmp_path):
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(oci_image.busybox_layer().tar)
    stack.pc("image", "import", "-c", 'ENTRYPOINT ["/bin/sh","-c"]', "-c", 'CMD ["echo imported-ok A=$A"]',
             "-c", "ENV A=1", "-m", "made in a test", str(rootfs), "imported:1")
    stack.write('services:\n  job:\n    image: imported:1\n    restart: "no"\n')
    stack.pc("up", "-d")
    logs = waiting.wait_for(lambda: "imported-ok" in (out := stack.pc(
        "logs", "--no-log-prefix", "job").stdout) and out, timeout=60, what="the job's output")
    assert logs == "imported-ok A=1\n"


def test_import_refuses_a_bad_change_before_reading_the_tar(stack, tmp_path):
    done = run(stack, "image", "import", "-c", "RUN rm -rf /", str(tmp_path / "absent.tar"), "x:1")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr == "pcompose: error: RUN is not a valid change command " \
                          "(one of CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)\n"


def _push_raw(reg: registry.Registry, name: str, blobs: list[bytes], manifest: bytes, media_type: str) -> str:
    """Upload blobs and a manifest as they are, without a client that would check or rewrite them."""
    base = f"http://{reg.host}/v2/{name}"
    for blob in blobs:
        start = urllib.request.Request(f"{base}/blobs/uploads/", method="POST")
        with urllib.request.urlopen(start) as resp:
            location = resp.headers["Location"]
        url = location if location.startswith("http") else f"http://{reg.host}{location}"
        url += ("&" if "?" in url else "?") + f"digest={sha(blob)}"
        urllib.request.urlopen(urllib.request.Request(url, data=blob, method="PUT",
                                                      headers={"Content-Type": "application/octet-stream"})).close()
    urllib.request.urlopen(urllib.request.Request(f"{base}/manifests/1", data=manifest, method="PUT",
                                                  headers={"Content-Type": media_type})).close()
    return f"{reg.host}/{name}:1"


@pytest.fixture
def live_registry(tmp_path):
    with registry.running(tmp_path / "registry") as reg:
        yield reg


PULLED = {
    "env-string": ({"Env": "PATH=/bin"}, None, "config.config.Env: expected a list of strings, found a string"),
    "labels-list": ({"Labels": ["a=b"]}, None, "config.config.Labels: expected an object, found a list"),
    "config-said-huge": ({}, 32 << 20, "image config of 33554432 bytes"),
}


@pytest.mark.parametrize("fields, size, fault", PULLED.values(), ids=PULLED.keys())
def test_a_pulled_image_of_the_wrong_shape_fails_its_service_with_the_reason(stack, live_registry, fields, size,
                                                                             fault):
    config = raw(with_config(Cmd=["sleep", "1000"], **fields))
    manifest = {"schemaVersion": 2, "mediaType": oci_image.OCI_MANIFEST,
                "config": {"mediaType": oci_image.OCI_CONFIG, "digest": sha(config), "size": size or len(config)},
                "layers": [{"mediaType": oci_image.OCI_LAYER_GZIP, "digest": TINY.digest, "size": len(TINY.blob)}]}
    ref = _push_raw(live_registry, "hostile", [config, TINY.blob], raw(manifest), oci_image.OCI_MANIFEST)
    pulled = run(stack, "pull", ref)
    assert pulled.returncode == 1 and "Traceback" not in pulled.stderr
    assert pulled.stderr.startswith(f"pcompose: error: {ref}: {fault}") and pulled.stderr.count("\n") == 1, \
        pulled.stderr
    stack.write(f"services:\n  app:\n    image: {ref}\n")
    up = stack.pc("up", "-d", check=False)  # the agent pulls: its error reaches the user as the reason
    assert up.returncode == 1
    assert f"image {ref}: {fault}" in up.stderr and "Traceback" not in up.stderr, up.stderr
    assert image_names(stack) == ["busybox:latest"]


HOSTILE_LAYERS = {
    # Each writes, or links, at the canary through a path that looks like the layer's own.
    "symlink-then-file": lambda c: LayerBuilder().symlink("evil", str(c.path)).file("evil/pwned", "x"),
    "climbing-symlink-then-file": lambda c: LayerBuilder().symlink(
        "evil", "../" * 12 + str(c.path).lstrip("/")).file("evil/pwned", "x"),
    "dot-dot-name": lambda c: LayerBuilder().file("../" * 12 + str(c.path / "pwned").lstrip("/"), "x"),
    "hardlink-to-host-file": lambda c: LayerBuilder().hardlink("stolen", str(c.secret)),
    "hardlink-through-symlink": lambda c: LayerBuilder().symlink("evil", str(c.path))
    .hardlink("stolen", "evil/secret.txt"),
}


@pytest.mark.parametrize("make", HOSTILE_LAYERS.values(), ids=HOSTILE_LAYERS.keys())
def test_a_hostile_layer_neither_writes_nor_links_host_files(shared_stack, tmp_path, canary, make):
    """A layer that writes or links through a path leading out of it is refused whole, and
    nothing lands in (or is linked from) the host's canary dir."""
    layer = make(canary).build()
    path = oci_image.write_docker_archive(tmp_path / "hostile.tar",
                                          [layer], ["hostile:1"])
    line = refused(shared_stack, path)
    assert "entry" in line or "layer" in line, line
    assert canary.untouched()
    assert canary.secret.stat().st_nlink == 1
