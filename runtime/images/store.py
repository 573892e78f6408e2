"""The content store under the state root: blobs by digest, references to manifests, locks, image records."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from runtime import statefiles
from runtime.images import manifest, reference

LOWERS_FILE = "lowers.json"  # rootfs/<id>/lowers.json: the chain ids a container's root uses


class StoreError(Exception):
    """The store cannot do what was asked; the message says what and where."""


class DigestMismatch(StoreError):
    """Content that does not hash to the digest it was announced under; nothing of it is kept."""


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    digest: str      # the blob as stored (usually compressed)
    media_type: str
    size: int
    diff_id: str     # sha256 of the uncompressed tar
    chain_id: str    # identity of this layer with everything below it: the layers/<chainid>/ dir


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    id: str                 # config digest, as docker's IMAGE ID
    digest: str             # repo digest: the index digest when pulled through one, else the manifest's
    manifest_digest: str
    references: tuple[str, ...]
    config: manifest.ImageConfig
    layers: tuple[LayerInfo, ...]
    size: int

    @property
    def chain_ids(self) -> tuple[str, ...]:
        return tuple(layer.chain_id for layer in self.layers)


@dataclasses.dataclass(frozen=True)
class RefEntry:
    manifest: str
    index: str | None = None


class Store:
    """Paths and primitives of one state root; safe for several processes at once."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.images_dir = self.root / "images"
        self.blobs_dir = self.images_dir / "blobs" / "sha256"
        self.ingest_dir = self.images_dir / "ingest"
        self.refs_file = self.images_dir / "refs.json"
        self.layers_dir = self.root / "layers"
        self.snapshots_dir = self.root / "rootfs"  # container roots (runtime.rootfs); read here for GC
        # The root first, 0700: `image load` often makes it, before any agent could tighten it.
        # Layers hold the images' setuid files: their dirs are root's only too (overlayfs
        # reaches them as the mounter, a container never through these paths).
        for d in (self.root, self.images_dir, self.layers_dir):
            statefiles.private_dir(d)
        for d in (self.blobs_dir, self.ingest_dir, self.layers_dir / "l"):
            d.mkdir(parents=True, exist_ok=True)

    # -- locks: writers of blobs and layers hold `shared`, garbage collection holds `exclusive`
    @contextlib.contextmanager
    def _flock(self, name: str, mode: int) -> Iterator[None]:
        fd = os.open(self.images_dir / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)

    def shared(self) -> contextlib.AbstractContextManager[None]:
        return self._flock("gc.lock", fcntl.LOCK_SH)

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        return self._flock("gc.lock", fcntl.LOCK_EX)

    # -- blobs
    def blob_path(self, digest: str) -> Path:
        if not reference.is_digest(digest):
            raise StoreError(f"not a sha256 digest: {digest!r}")
        return self.blobs_dir / digest.split(":", 1)[1]

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def read_blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"blob {digest} is not in the store") from None

    def writer(self, expected: str | None = None) -> BlobWriter:
        return BlobWriter(self, expected)

    def write_blob(self, data: bytes, expected: str | None = None) -> str:
        with self.writer(expected) as w:
            w.write(data)
            return w.commit()

    def blob_digests(self) -> set[str]:
        return {"sha256:" + p.name for p in self.blobs_dir.iterdir() if len(p.name) == 64}

    # -- references
    def read_refs(self) -> dict[str, RefEntry]:
        try:
            doc = json.loads(self.refs_file.read_text())
        except FileNotFoundError:
            return {}
        return {k: RefEntry(v["manifest"], v.get("index")) for k, v in doc.items()}

    def update_refs(self, changes: dict[str, RefEntry | None]) -> None:
        """Set (or with None, drop) references in one atomic replace of refs.json."""
        with self._flock("refs.lock", fcntl.LOCK_EX):
            refs = self.read_refs()
            for key, entry in changes.items():
                if entry is None:
                    refs.pop(key, None)
                else:
                    refs[key] = entry
            doc = {k: dataclasses.asdict(v) for k, v in sorted(refs.items())}
            statefiles.write(self.refs_file, json.dumps(doc, indent=1), sync=True)

    # -- layers
    def layer_dir(self, chain_id: str) -> Path:
        return self.layers_dir / chain_id.split(":", 1)[1]

    def has_layer(self, chain_id: str) -> bool:
        return (self.layer_dir(chain_id) / "complete").is_file()

    def layer_ids(self) -> set[str]:
        return {"sha256:" + p.name for p in self.layers_dir.iterdir() if len(p.name) == 64}

    def layers_in_use(self) -> set[str]:
        """Chain ids that some container's root is built from."""
        return {chain_id for chain_ids in self.container_roots().values() for chain_id in chain_ids}

    def container_roots(self) -> dict[str, tuple[str, ...]]:
        """Container id -> the chain ids its root is built from (bottom first), for every root
        on disk, whatever runc knows of its container."""
        roots = {}
        for lowers in self.snapshots_dir.glob(f"*/{LOWERS_FILE}"):
            with contextlib.suppress(FileNotFoundError, ValueError, TypeError):
                roots[lowers.parent.name] = tuple(str(c) for c in json.loads(lowers.read_text()))
        return roots

    # -- images
    def record(self, manifest_digest: str, repo_digest: str | None = None,
               references: tuple[str, ...] = ()) -> ImageRecord:
        m = manifest.parse_manifest(self.read_blob(manifest_digest))
        config = manifest.parse_config(self.read_blob(m.config.digest))
        if len(config.diff_ids) != len(m.layers):
            raise StoreError(f"image {manifest_digest}: config lists {len(config.diff_ids)} layers, "
                             f"manifest {len(m.layers)}")
        layers = tuple(
            LayerInfo(d.digest, d.media_type, d.size, diff_id, chain_id)
            for d, diff_id, chain_id in zip(m.layers, config.diff_ids, manifest.chain_ids(config.diff_ids),
                                             strict=True))
        return ImageRecord(
            id=m.config.digest, digest=repo_digest or manifest_digest, manifest_digest=manifest_digest,
            references=references, config=config, layers=layers,
            size=sum(max(layer.size, 0) for layer in layers) + max(m.config.size, 0))

    def list_images(self) -> list[ImageRecord]:
        """Every image that a reference points to, one record per manifest with all its references."""
        by_manifest: dict[str, tuple[str, list[str]]] = {}
        for key, entry in self.read_refs().items():
            _, names = by_manifest.setdefault(entry.manifest, (entry.index or entry.manifest, []))
            names.append(key)
        return [self.record(m, digest, tuple(sorted(names))) for m, (digest, names) in by_manifest.items()]

    def resolve(self, text: str) -> ImageRecord | None:
        """The image for a reference (`busybox`, `name@sha256:...`) or an image id (prefix)."""
        refs = self.read_refs()
        key = None
        with contextlib.suppress(reference.ReferenceError):
            ref = reference.parse(text)
            key = str(ref)
            if key not in refs and ref.digest:
                key = next((k for k, e in refs.items() if name_of(k) == ref.name
                            and ref.digest in (e.manifest, e.index)), None)
        if key in refs:
            entry = refs[key]
            names = tuple(sorted(k for k, e in refs.items() if e.manifest == entry.manifest))
            return self.record(entry.manifest, entry.index or entry.manifest, names)
        return self._resolve_id(text)

    def resolve_written(self, text: str) -> ImageRecord:
        """The image a reference names that this process has just written: one removed again
        meanwhile (by another process) is an error, not None."""
        record = self.resolve(text)
        if record is None:
            raise StoreError(f"image {text} was removed while it was being written")
        return record

    def _resolve_id(self, text: str) -> ImageRecord | None:
        prefix = text.removeprefix("sha256:")
        if len(prefix) < 4 or any(c not in "0123456789abcdef" for c in prefix):
            return None
        found = [i for i in self.list_images() if i.id.removeprefix("sha256:").startswith(prefix)]
        if len({i.id for i in found}) > 1:
            raise StoreError(f"image id prefix {text!r} is ambiguous")
        return found[0] if found else None


def name_of(key: str) -> str | None:
    """The repository name of a refs.json key, None for keys that are not references (untagged images)."""
    try:
        return reference.parse(key).name
    except reference.ReferenceError:
        return None


class BlobWriter:
    """Writes a blob to a temp file, then verifies, fsyncs and renames it into place: no partial
    blob is ever seen."""

    def __init__(self, store: Store, expected: str | None) -> None:
        self._store = store
        self.expected = expected
        self._hash = hashlib.sha256()
        self.size = 0
        fd, self._tmp = tempfile.mkstemp(dir=store.ingest_dir, prefix="blob.")  # "": renamed or removed
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._file.write(data)
        self.size += len(data)

    def commit(self) -> str:
        digest = "sha256:" + self._hash.hexdigest()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if self.expected and digest != self.expected:
            self.abort()
            raise DigestMismatch(f"content announced as {self.expected} hashes to {digest}")
        os.replace(self._tmp, self._store.blob_path(digest))
        self._tmp = ""
        return digest

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self._tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._tmp = ""

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.abort()
