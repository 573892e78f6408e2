"""Small images for tests, built from the host's busybox: OCI layouts, docker-archives, extra layers."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path

from tests.support import busybox

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclasses.dataclass(frozen=True)
class Layer:
    tar: bytes        # uncompressed
    blob: bytes       # gzipped, as pushed

    @property
    def diff_id(self) -> str:
        return sha(self.tar)

    @property
    def digest(self) -> str:
        return sha(self.blob)


def layer_from_tar(tar: bytes) -> Layer:
    return Layer(tar, gzip.compress(tar, compresslevel=1, mtime=0))


def busybox_layer() -> Layer:
    """The busybox root (tests.support.busybox.make_rootfs) as one layer."""
    with tempfile.TemporaryDirectory() as tmp:
        root = busybox.make_rootfs(Path(tmp) / "root")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(root.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
        return layer_from_tar(buf.getvalue())


class LayerBuilder:
    """Tar entries written by hand, for whiteouts and hostile names that tarfile.add cannot make."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _add(self, name: str, kind: bytes, data: bytes = b"", **attrs) -> LayerBuilder:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = len(data)
        info.mode = attrs.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
        info.mtime = 1700000000
        for k, v in attrs.items():
            setattr(info, k, v)
        self.tar.addfile(info, io.BytesIO(data) if data else None)
        return self

    def dir(self, name: str, **attrs) -> LayerBuilder:
        return self._add(name, tarfile.DIRTYPE, **attrs)

    def file(self, name: str, data: bytes | str, **attrs) -> LayerBuilder:
        return self._add(name, tarfile.REGTYPE, data.encode() if isinstance(data, str) else data, **attrs)

    def symlink(self, name: str, target: str) -> LayerBuilder:
        return self._add(name, tarfile.SYMTYPE, linkname=target, mode=0o777)

    def hardlink(self, name: str, target: str) -> LayerBuilder:
        return self._add(name, tarfile.LNKTYPE, linkname=target)

    def chardev(self, name: str, major: int, minor: int) -> LayerBuilder:
        return self._add(name, tarfile.CHRTYPE, devmajor=major, devminor=minor, mode=0o666)

    def fifo(self, name: str) -> LayerBuilder:
        return self._add(name, tarfile.FIFOTYPE)

    def whiteout(self, path: str) -> LayerBuilder:
        parent, _, base = path.rpartition("/")
        return self.file(f"{parent}/.wh.{base}" if parent else f".wh.{base}", b"")

    def opaque(self, dir_path: str) -> LayerBuilder:
        return self.file(f"{dir_path}/.wh..wh..opq", b"")

    def build(self) -> Layer:
        self.tar.close()
        return layer_from_tar(self.buf.getvalue())


def config_for(layers: list[Layer], arch: str = "amd64", cmd: tuple[str, ...] = ("sh",), **extra) -> bytes:
    doc = {"architecture": arch, "os": "linux", "created": "2026-01-01T00:00:00Z",
           "config": {"Cmd": list(cmd), "Env": ["PATH=/bin"], **extra},
           "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}}
    return json.dumps(doc).encode()


def _put(layout: Path, data: bytes) -> dict:
    digest = sha(data)
    (layout / "blobs" / "sha256" / digest[7:]).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def _manifest(layout: Path, layers: list[Layer], arch: str, cmd: tuple[str, ...]) -> dict:
    config = _put(layout, config_for(layers, arch, cmd))
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": OCI_CONFIG, **config},
           "layers": [{"mediaType": OCI_LAYER_GZIP, **_put(layout, layer.blob)} for layer in layers]}
    return {"mediaType": OCI_MANIFEST, **_put(layout, json.dumps(doc).encode())}


def _start(layout: Path) -> None:
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def write_layout(layout: Path, layers: list[Layer], tag: str = "latest", arch: str = "amd64",
                 cmd: tuple[str, ...] = ("sh",)) -> str:
    """An OCI image layout with one image tagged `tag` (skopeo's `oci:DIR:tag`); returns the manifest digest."""
    _start(layout)
    desc = _manifest(layout, layers, arch, cmd)
    desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    return desc["digest"]


def write_multiplatform_layout(layout: Path, per_arch: dict[str, list[Layer]], tag: str = "latest") -> str:
    """An OCI layout whose tag names an index with one manifest per architecture; returns the index digest."""
    _start(layout)
    entries = []
    for arch, layers in per_arch.items():
        desc = _manifest(layout, layers, arch, ("echo", arch))
        entries.append({**desc, "platform": {"os": "linux", "architecture": arch}})
    index = _put(layout, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode())
    desc = {"mediaType": OCI_INDEX, **index, "annotations": {"org.opencontainers.image.ref.name": tag}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    return index["digest"]


def write_oci_archive(path: Path, layout: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for p in sorted(layout.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(layout)), recursive=False)
    return path


def write_docker_archive(path: Path, layers: list[Layer], repo_tags: list[str],
                         cmd: tuple[str, ...] = ("sh",)) -> Path:
    """A tar as `docker save` writes it: manifest.json, <id>.json, <n>/layer.tar (uncompressed)."""
    config = config_for(layers, cmd=cmd)
    config_name = sha(config)[7:] + ".json"
    members = {config_name: config}
    names = []
    for i, layer in enumerate(layers):
        names.append(f"{i:064x}/layer.tar")
        members[names[-1]] = layer.tar
    members["manifest.json"] = json.dumps([{"Config": config_name, "RepoTags": repo_tags, "Layers": names}]).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
