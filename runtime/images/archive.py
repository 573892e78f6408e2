"""Images from files: `docker save` archives, OCI archives, and a root filesystem tar as a one-layer image."""

from __future__ import annotations

import dataclasses
import datetime
import gzip
import hashlib
import json
import os
import tarfile
from pathlib import Path
from typing import BinaryIO

import structlog

from runtime.images import manifest, reference, store as store_mod, unpack

log = structlog.get_logger(__name__)

DANGLING = "sha256:"  # refs.json keys for images loaded without a name start like an image id


class ArchiveError(store_mod.StoreError):
    """An archive that cannot be loaded; says which file and which entry."""


@dataclasses.dataclass(frozen=True)
class _Image:
    config: str
    layers: tuple[store_mod.LayerInfo, ...]
    names: tuple[str, ...]


def load(store: store_mod.Store, path: str | os.PathLike,
         platform: manifest.Platform | None = None) -> list[store_mod.ImageRecord]:
    """Load every image of a docker-archive or oci-archive (plain or gzipped tar)."""
    path = Path(path)
    try:
        tar = tarfile.open(path, "r:*")
    except (OSError, tarfile.TarError) as err:
        raise ArchiveError(f"{path}: not a readable tar archive: {err}") from None
    with tar, store.shared():
        names = set(tar.getnames())
        if "manifest.json" in names:
            manifests = _load_docker(store, tar, path)
        elif "index.json" in names and "oci-layout" in names:
            manifests = _load_oci(store, tar, path, platform or manifest.host())
        else:
            raise ArchiveError(f"{path}: neither a docker-archive (manifest.json) nor an OCI archive "
                               "(oci-layout, index.json)")
        records = []
        for manifest_digest, refs in manifests:
            record = store.record(manifest_digest)
            for layer in record.layers:
                unpack.ensure_layer(store, layer.chain_id, layer.diff_id, store.blob_path(layer.digest))
            keys = refs or (DANGLING + record.id.split(":", 1)[1],)
            store.update_refs({k: store_mod.RefEntry(manifest_digest) for k in keys})
            log.info("image.loaded", refs=list(keys), id=record.id, file=str(path))
            records.append(store.resolve(keys[0]))
    return records


def _member(tar: tarfile.TarFile, name: str, path: Path) -> BinaryIO:
    for candidate in (name, name.removeprefix("./"), "./" + name):
        try:
            f = tar.extractfile(candidate)
        except KeyError:
            continue
        if f is not None:
            return f
    raise ArchiveError(f"{path}: entry {name!r} is missing or not a file")


def _copy_in(store: store_mod.Store, src: BinaryIO, expected: str | None = None) -> tuple[str, int]:
    with store.writer(expected) as w:
        while chunk := src.read(1 << 20):
            w.write(chunk)
        return w.commit(), w.size


def _json(tar: tarfile.TarFile, name: str, path: Path) -> object:
    try:
        return json.loads(_member(tar, name, path).read())
    except ValueError as err:
        raise ArchiveError(f"{path}: {name}: not valid JSON: {err}") from None


def _load_docker(store: store_mod.Store, tar: tarfile.TarFile, path: Path) -> list[tuple[str, tuple[str, ...]]]:
    entries = _json(tar, "manifest.json", path)
    if not isinstance(entries, list):
        raise ArchiveError(f"{path}: manifest.json: expected a list of images")
    out = []
    for i, entry in enumerate(entries):
        where = f"{path}: manifest.json[{i}]"
        try:
            config_name, layer_names = entry["Config"], entry["Layers"]
        except (KeyError, TypeError):
            raise ArchiveError(f"{where}: needs Config and Layers") from None
        config_digest, config_size = _copy_in(store, _member(tar, config_name, path))
        layers = []
        for name in layer_names:
            member = _member(tar, name, path)
            head = member.read(2)
            member.seek(0)
            digest, size = _copy_in(store, member)
            media = manifest.OCI_LAYER_GZIP if head == b"\x1f\x8b" else manifest.OCI_LAYER
            layers.append({"mediaType": media, "digest": digest, "size": size})
        refs = []
        for tag in entry.get("RepoTags") or ():
            try:
                refs.append(str(reference.parse(tag)))
            except reference.ReferenceError as err:
                raise ArchiveError(f"{where}: RepoTags: {err}") from None
        out.append((_write_manifest(store, config_digest, config_size, layers), tuple(refs)))
    return out


def _write_manifest(store: store_mod.Store, config_digest: str, config_size: int, layers: list[dict]) -> str:
    doc = {"schemaVersion": 2, "mediaType": manifest.OCI_MANIFEST,
           "config": {"mediaType": manifest.OCI_CONFIG, "digest": config_digest, "size": config_size},
           "layers": layers}
    return store.write_blob(json.dumps(doc, separators=(",", ":")).encode())


def _load_oci(store: store_mod.Store, tar: tarfile.TarFile, path: Path,
              want: manifest.Platform) -> list[tuple[str, tuple[str, ...]]]:
    def blob(digest: str) -> bytes:
        data = _member(tar, f"blobs/sha256/{digest.split(':', 1)[1]}", path).read()
        store.write_blob(data, digest)
        return data

    index = json.loads(_member(tar, "index.json", path).read())
    out = []
    for i, raw in enumerate(index.get("manifests") or ()):
        desc = manifest.parse_index(json.dumps({"manifests": [raw]}).encode())[0]
        data = blob(desc.digest)
        if manifest.media_type_of(data, desc.media_type) in manifest.INDEX_TYPES:
            desc = manifest.choose(manifest.parse_index(data), want)
            data = blob(desc.digest)
        m = manifest.parse_manifest(data)
        blob(m.config.digest)
        for layer in m.layers:
            if not store.has_blob(layer.digest):
                _copy_in(store, _member(tar, f"blobs/sha256/{layer.digest.split(':', 1)[1]}", path), layer.digest)
        out.append((desc.digest, _oci_names(raw.get("annotations") or {}, f"{path}: index.json manifests[{i}]")))
    return out


def _oci_names(annotations: dict, where: str) -> tuple[str, ...]:
    """A full name from containerd's annotation or a ref.name that is one; a bare tag names nothing."""
    for key in ("io.containerd.image.name", "org.opencontainers.image.ref.name"):
        name = annotations.get(key, "")
        if name and ("/" in name or ":" in name):
            try:
                return (str(reference.parse(name)),)
            except reference.ReferenceError as err:
                raise ArchiveError(f"{where}: annotation {key}: {err}") from None
    return ()


def import_rootfs(store: store_mod.Store, path: str | os.PathLike, name: str,
                  platform: manifest.Platform | None = None) -> store_mod.ImageRecord:
    """A one-layer image from a root filesystem tar (plain or gzipped), like `docker import`."""
    ref = reference.parse(name)
    path = Path(path)
    plat = platform or manifest.host()
    with store.shared():
        try:
            with open(path, "rb") as src:
                layer_digest, size = _copy_in(store, src)
        except OSError as err:
            raise ArchiveError(f"{path}: cannot read: {err.strerror}") from None
        diff_id, gzipped = _diff_id(store.blob_path(layer_digest), path)
        now = datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
        config = {"architecture": plat.architecture, "os": plat.os, "created": now,
                  "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
                  "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                  "history": [{"created": now, "created_by": "pcompose image import", "comment": str(path.name)}]}
        if plat.variant:
            config["variant"] = plat.variant
        config_digest = store.write_blob(json.dumps(config, separators=(",", ":")).encode())
        media = manifest.OCI_LAYER_GZIP if gzipped else manifest.OCI_LAYER
        manifest_digest = _write_manifest(
            store, config_digest, store.blob_path(config_digest).stat().st_size,
            [{"mediaType": media, "digest": layer_digest, "size": size}])
        unpack.ensure_layer(store, diff_id, diff_id, store.blob_path(layer_digest))
        store.update_refs({str(ref): store_mod.RefEntry(manifest_digest)})
    log.info("image.imported", ref=str(ref), file=str(path))
    return store.resolve(str(ref))


def _diff_id(blob: Path, path: Path) -> tuple[str, bool]:
    h = hashlib.sha256()
    with open(blob, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        src = gzip.GzipFile(fileobj=raw) if gzipped else raw
        try:
            while chunk := src.read(1 << 20):
                h.update(chunk)
        except (OSError, EOFError) as err:
            raise ArchiveError(f"{path}: corrupt compressed data: {err}") from None
    return "sha256:" + h.hexdigest(), gzipped
