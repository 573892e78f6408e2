"""A build's images: a base from the store (or scratch), and the result written there as an OCI image."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from collections.abc import Iterable
from typing import Any

import structlog

from runtime.images import manifest, reference, store as store_mod

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True)
class LayerRef:
    """A layer as an image lists it: the blob (digest, media type, size) and its diff id."""
    digest: str
    diff_id: str
    media_type: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_json(doc: dict[str, Any]) -> LayerRef:
        return LayerRef(str(doc["digest"]), str(doc["diff_id"]), str(doc["media_type"]), int(doc["size"]))


@dataclasses.dataclass(frozen=True)
class Base:
    """What a stage starts from: the image config document (as JSON) and its layers, bottom first."""
    id: str                         # the image id, "scratch" for none
    config: dict[str, Any]          # the config document's "config" object (Env, Cmd, ...)
    history: tuple[dict[str, Any], ...]
    layers: tuple[LayerRef, ...]

    @property
    def chain_ids(self) -> tuple[str, ...]:
        return chain_ids(self.layers)


SCRATCH = Base("scratch", {}, (), ())


def base_of(store: store_mod.Store, record: store_mod.ImageRecord) -> Base:
    doc = json.loads(store.read_blob(record.id))
    layers = tuple(LayerRef(layer.digest, layer.diff_id, layer.media_type, layer.size)
                   for layer in record.layers)
    return Base(record.id, dict(doc.get("config") or {}), tuple(doc.get("history") or ()), layers)


def chain_ids(layers: Iterable[LayerRef]) -> tuple[str, ...]:
    return manifest.chain_ids(tuple(layer.diff_id for layer in layers))


def _blob(store: store_mod.Store, data: bytes) -> str:
    """The blob of `data`, written (and synced) only when the store does not hold it yet: the
    same steps give the same config and manifest, and a warm build then writes nothing."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return digest if store.has_blob(digest) else store.write_blob(data)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def write(store: store_mod.Store, config: dict[str, Any], layers: tuple[LayerRef, ...],
          history: list[dict[str, Any]], tags: Iterable[str], created: str | None = None) -> str:
    """Config, manifest and then the references, the last step: a build that fails before it leaves
    no name pointing at anything; returns the image id (the config digest)."""
    plat = manifest.host()
    document: dict[str, Any] = {
        "architecture": plat.architecture, "os": plat.os, "created": created or now(), "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": history,
    }
    if plat.variant:
        document["variant"] = plat.variant
    data = json.dumps(document, separators=(",", ":")).encode()
    with store.shared():
        config_digest = _blob(store, data)
        m = {"schemaVersion": 2, "mediaType": manifest.OCI_MANIFEST,
             "config": {"mediaType": manifest.OCI_CONFIG, "digest": config_digest, "size": len(data)},
             "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}
                        for layer in layers]}
        manifest_digest = _blob(store, json.dumps(m, separators=(",", ":")).encode())
        keys = [str(reference.parse(t)) for t in tags] or ["sha256:" + config_digest.split(":", 1)[1]]
        entry = store_mod.RefEntry(manifest_digest)
        if any(store.read_refs().get(k) != entry for k in keys):  # a warm build names nothing new
            store.update_refs(dict.fromkeys(keys, entry))
    log.info("image.built", refs=keys, id=config_digest)
    return config_digest
