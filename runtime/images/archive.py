"""Images from files: `docker save` archives, OCI archives, and a root filesystem tar as a one-layer image."""

from __future__ import annotations

import dataclasses
import datetime
import gzip
import hashlib
import json
import os
import posixpath
import tarfile
import zlib
from pathlib import Path
from typing import IO

import structlog

from runtime.images import changes as changes_mod, manifest, reference, store as store_mod, unpack

log = structlog.get_logger(__name__)

DANGLING = "sha256:"  # refs.json keys for images loaded without a name start like an image id


class ArchiveError(store_mod.StoreError):
    """An archive that cannot be loaded; says which file and which entry."""


@dataclasses.dataclass(frozen=True)
class _Image:
    config: str
    layers: tuple[store_mod.LayerInfo, ...]
    names: tuple[str, ...]


MAX_JSON = 16 << 20   # manifest.json, index.json, manifests and configs are small; a huge one is an attack
MAX_ENTRIES = 100_000  # an archive holds a few files per layer
MAX_LINKS = 16         # links followed to reach one entry (docker save links repeated layers)


def load(store: store_mod.Store, path: str | os.PathLike,
         platform: manifest.Platform | None = None) -> list[store_mod.ImageRecord]:
    """Load every image of a docker-archive or oci-archive (plain or gzipped tar); one record per
    image, with the names the archive gave it.

    Every document read from the archive is checked before anything is tagged: an archive of the
    wrong shape is an ArchiveError naming the file and field, and leaves no reference behind.
    """
    path = Path(path)
    try:
        tar = tarfile.open(path, "r:*", tarinfo=unpack.TarInfo)
    except (OSError, tarfile.TarError, unpack.LayerError) as err:
        raise ArchiveError(f"{path}: not a readable tar archive: {err}") from None
    with tar, store.shared():
        members = _Members(tar, path)
        try:
            if members.has("manifest.json"):
                manifests = _load_docker(store, members, path)
            elif members.has("index.json") and members.has("oci-layout"):
                manifests = _load_oci(store, members, path, platform or manifest.host())
            else:
                raise ArchiveError(f"{path}: neither a docker-archive (manifest.json) nor an OCI archive "
                                   "(oci-layout, index.json)")
        except manifest.ManifestError as err:
            raise ArchiveError(f"{path}: {err}") from None
        except (tarfile.TarError, EOFError, zlib.error) as err:
            raise ArchiveError(f"{path}: corrupt archive: {err}") from None
        if not manifests:
            raise ArchiveError(f"{path}: the archive holds no image")
        records = []
        for manifest_digest, refs in manifests:
            record = store.record(manifest_digest)
            for layer in record.layers:
                unpack.ensure_layer(store, layer.chain_id, layer.diff_id, store.blob_path(layer.digest))
            keys = refs or (DANGLING + record.id.split(":", 1)[1],)
            store.update_refs({k: store_mod.RefEntry(manifest_digest) for k in keys})
            log.info("image.loaded", refs=list(keys), id=record.id, file=str(path))
            # the names this archive gave, as docker prints them; not every name the image has here
            records.append(dataclasses.replace(store.resolve_written(keys[0]), references=tuple(keys)))
    return records


class _Members:
    """An archive's entries by normalized name (`./a/b` is `a/b`, as docker and skopeo read it).

    The archive is never extracted, only read entry by entry; still, a name or link that leaves the
    archive (absolute, `..` after normalizing) or an entry below a symlinked directory is refused,
    so that no reading of it depends on how links would resolve on a disk.
    """

    def __init__(self, tar: tarfile.TarFile, path: Path) -> None:
        self.tar, self.path = tar, path
        self.by_name: dict[str, tarfile.TarInfo] = {}
        try:
            for i, info in enumerate(tar):
                if i >= MAX_ENTRIES:
                    raise ArchiveError(f"{path}: more than {MAX_ENTRIES} entries; not an image archive")
                name = self._normal(info.name, f"entry {info.name!r}")
                if name:
                    self.by_name[name] = info  # a later entry of the same name replaces one, as tar does
        except (tarfile.TarError, EOFError, zlib.error, unpack.LayerError) as err:
            raise ArchiveError(f"{path}: corrupt archive: {err}") from None
        links = {n for n, info in self.by_name.items() if info.issym()}
        for name, info in self.by_name.items():
            parents = name.split("/")[:-1]
            for k in range(1, len(parents) + 1):
                if "/".join(parents[:k]) in links:
                    raise ArchiveError(f"{path}: entry {info.name!r} lies below a symlink "
                                       f"({'/'.join(parents[:k])!r})")
            if info.issym() or info.islnk():
                self._target(name, info)

    def _normal(self, name: str, what: str) -> str:
        """The name without `./` and `a/..`; '' for the archive's root. Refuses names that leave it."""
        if name.startswith("/"):
            raise ArchiveError(f"{self.path}: {what}: absolute path")
        normal = posixpath.normpath(name) if name else "."
        if normal == ".." or normal.startswith("../"):
            raise ArchiveError(f"{self.path}: {what}: leaves the archive ('..')")
        return "" if normal == "." else normal

    def _target(self, name: str, info: tarfile.TarInfo) -> str:
        what = f"link {info.name!r} -> {info.linkname!r}"
        # a symlink is relative to its directory; a hard link names an entry of the archive
        target = posixpath.join(posixpath.dirname(name), info.linkname) if info.issym() else info.linkname
        normal = self._normal(target, what)
        if not normal:
            raise ArchiveError(f"{self.path}: {what}: points at the archive itself")
        return normal

    def has(self, name: str) -> bool:
        return name in self.by_name

    def open(self, name: str) -> tuple[IO[bytes], int]:
        """The regular file an archive-relative name gives (links followed); with its size."""
        current = self._normal(name, f"entry {name!r}")
        for _ in range(MAX_LINKS):
            info = self.by_name.get(current)
            if info is None:
                raise ArchiveError(f"{self.path}: entry {name!r} is missing")
            if info.isreg() and (data := self.tar.extractfile(info)) is not None:
                return data, info.size
            if not (info.issym() or info.islnk()):
                raise ArchiveError(f"{self.path}: entry {name!r} is not a file")
            current = self._target(current, info)
        raise ArchiveError(f"{self.path}: entry {name!r}: more than {MAX_LINKS} links to follow")

    def read(self, name: str, limit: int = MAX_JSON) -> bytes:
        src, size = self.open(name)
        if size > limit:
            raise ArchiveError(f"{self.path}: entry {name!r} is {unpack.human_size(size)}, "
                               f"more than a document of an image may be ({unpack.human_size(limit)})")
        return src.read()

    def json(self, name: str) -> object:
        try:
            return json.loads(self.read(name))
        except (ValueError, RecursionError) as err:
            raise ArchiveError(f"{self.path}: {name}: not valid JSON: {err}") from None


def _copy_in(store: store_mod.Store, src: IO[bytes], expected: str | None = None) -> tuple[str, int]:
    with store.writer(expected) as w:
        while chunk := src.read(1 << 20):
            w.write(chunk)
        return w.commit(), w.size


@dataclasses.dataclass(frozen=True)
class _DockerEntry:
    config_name: str
    config: bytes
    layer_names: tuple[str, ...]
    refs: tuple[str, ...]


def _docker_entries(members: _Members, path: Path) -> list[_DockerEntry]:
    """manifest.json and each image's config, checked whole before anything is copied in."""
    entries = members.json("manifest.json")
    if not isinstance(entries, list):
        raise ArchiveError(
            f"{path}: manifest.json: expected a list of images, found {manifest.json_kind(entries)}")
    out = []
    for i, entry in enumerate(entries):
        where = f"manifest.json[{i}]"
        if not isinstance(entry, dict):
            raise ArchiveError(f"{path}: {where}: expected an object, found {manifest.json_kind(entry)}")
        config_name = manifest.string(entry.get("Config"), f"{where}.Config")
        if not config_name or entry.get("Layers") is None:
            raise ArchiveError(f"{path}: {where}: needs Config and Layers")
        layer_names = manifest.strings(entry.get("Layers"), f"{where}.Layers")
        refs = []
        for tag in manifest.strings(entry.get("RepoTags"), f"{where}.RepoTags"):
            try:
                refs.append(str(reference.parse(tag)))
            except reference.ReferenceError as err:
                raise ArchiveError(f"{path}: {where}.RepoTags: {err}") from None
        config = members.read(config_name)
        try:
            diff_ids = manifest.parse_config(config).diff_ids
        except manifest.ManifestError as err:
            raise ArchiveError(f"{path}: {config_name}: {err}") from None
        if len(diff_ids) != len(layer_names):
            raise ArchiveError(f"{path}: {where}: {len(layer_names)} layers, but its config lists "
                               f"{len(diff_ids)} (rootfs.diff_ids)")
        out.append(_DockerEntry(config_name, config, layer_names, tuple(refs)))
    return out


def _load_docker(store: store_mod.Store, members: _Members, path: Path) -> list[tuple[str, tuple[str, ...]]]:
    out = []
    for entry in _docker_entries(members, path):
        config_digest = store.write_blob(entry.config)
        layers = []
        for name in entry.layer_names:
            member, _ = members.open(name)
            head = member.read(4)
            member.seek(0)
            digest, size = _copy_in(store, member)
            media = (manifest.OCI_LAYER_GZIP if head[:2] == b"\x1f\x8b" else
                     manifest.OCI_LAYER_ZSTD if head == b"\x28\xb5\x2f\xfd" else manifest.OCI_LAYER)
            layers.append({"mediaType": media, "digest": digest, "size": size})
        out.append((_write_manifest(store, config_digest, len(entry.config), layers), entry.refs))
    return out


def _write_manifest(store: store_mod.Store, config_digest: str, config_size: int, layers: list[dict]) -> str:
    doc = {"schemaVersion": 2, "mediaType": manifest.OCI_MANIFEST,
           "config": {"mediaType": manifest.OCI_CONFIG, "digest": config_digest, "size": config_size},
           "layers": layers}
    return store.write_blob(json.dumps(doc, separators=(",", ":")).encode())


def _blob_name(digest: str) -> str:
    return f"blobs/sha256/{digest.split(':', 1)[1]}"


def _load_oci(store: store_mod.Store, members: _Members, path: Path,
              want: manifest.Platform) -> list[tuple[str, tuple[str, ...]]]:
    def blob(digest: str) -> bytes:
        data = members.read(_blob_name(digest))
        store.write_blob(data, digest)
        return data

    index_data = members.read("index.json")
    descriptors = manifest.parse_index(index_data)  # checks every entry's shape
    raws = json.loads(index_data).get("manifests") or []
    plans = []
    for i, (desc, raw) in enumerate(zip(descriptors, raws, strict=True)):
        where = f"index.json manifests[{i}]"
        names = _oci_names(manifest.obj(raw.get("annotations"), f"{where}.annotations"), where)
        data = blob(desc.digest)
        if manifest.media_type_of(data, desc.media_type) in manifest.INDEX_TYPES:
            desc = manifest.choose(manifest.parse_index(data), want)
            data = blob(desc.digest)
        m = manifest.parse_manifest(data)
        config = manifest.parse_config(blob(m.config.digest))
        if len(config.diff_ids) != len(m.layers):
            raise ArchiveError(f"{path}: image {desc.digest}: {len(m.layers)} layers, but its config lists "
                               f"{len(config.diff_ids)} (rootfs.diff_ids)")
        plans.append((desc.digest, m, names))
    for _, m, _ in plans:  # every document is sound: now the layers, the bulk of it
        for layer in m.layers:
            if not store.has_blob(layer.digest):
                _copy_in(store, members.open(_blob_name(layer.digest))[0], layer.digest)
    return [(digest, names) for digest, _, names in plans]


def _oci_names(annotations: dict, where: str) -> tuple[str, ...]:
    """A full name from containerd's annotation or a ref.name that is one; a bare tag names nothing."""
    for key in ("io.containerd.image.name", "org.opencontainers.image.ref.name"):
        name = manifest.string(annotations.get(key), f"{where}: annotation {key}")
        if name and ("/" in name or ":" in name):
            try:
                return (str(reference.parse(name)),)
            except reference.ReferenceError as err:
                raise manifest.ManifestError(f"{where}: annotation {key}: {err}") from None
    return ()


DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)


def import_rootfs(store: store_mod.Store, path: str | os.PathLike, name: str,
                  platform: manifest.Platform | None = None, changes: tuple[str, ...] = (),
                  message: str = "", source: str | None = None) -> store_mod.ImageRecord:
    """A one-layer image from a root filesystem tar (plain or gzipped), like `docker import`.

    `changes` are Dockerfile instructions (CMD, ENTRYPOINT, ENV, ...) applied to its config, as
    `docker import --change`; `message` is its history comment (default: where it came from).
    """
    ref = reference.parse(name)
    path = Path(path)
    plat = platform or manifest.host()
    # the changes are checked before the tar is copied in: a typo costs nothing
    image_config = changes_mod.apply({"Env": list(DEFAULT_ENV)}, [changes_mod.parse(c) for c in changes])
    with store.shared():
        try:
            with open(path, "rb") as src:
                layer_digest, size = _copy_in(store, src)
        except OSError as err:
            raise ArchiveError(f"{path}: cannot read: {err.strerror}") from None
        diff_id, gzipped = _diff_id(store.blob_path(layer_digest), path)
        now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
        config = {"architecture": plat.architecture, "os": plat.os, "created": now,
                  "config": image_config,
                  "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                  "history": [{"created": now, "created_by": "pcompose image import",
                               "comment": message or f"Imported from {source or path.name}"}]}
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
    return store.resolve_written(str(ref))


def _diff_id(blob: Path, path: Path) -> tuple[str, bool]:
    h = hashlib.sha256()
    limit, done = unpack.Limits.from_env().max_size, 0
    with open(blob, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        src = gzip.GzipFile(fileobj=raw) if gzipped else raw
        try:
            while chunk := src.read(1 << 20):
                done += len(chunk)
                if done > limit:  # a gzip bomb: stop reading it here, not after the whole stream
                    raise unpack.LayerTooLarge(f"{path}: expands past {unpack.human_size(limit)} "
                                               f"(the limit, {unpack.MAX_SIZE_ENV})")
                h.update(chunk)
        except (OSError, EOFError, zlib.error) as err:
            raise ArchiveError(f"{path}: corrupt compressed data: {err}") from None
    return "sha256:" + h.hexdigest(), gzipped
