"""The build cache: a step's chained key -> the layers its stage has after it, under the state root."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from runtime import statefiles
from runtime.build import image
from runtime.images import store as store_mod


def key(parent: str, *parts: Any) -> str:
    """BuildKit's chain: the parent's key and what this step is and sees, as canonical JSON."""
    text = json.dumps([parent, *parts], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_dir(store: store_mod.Store) -> Path:
    return store.root / "build" / "cache"


class Cache:
    """One JSON file per key. A hit needs every blob of its layers still in the store; `enabled`
    False (--no-cache) reads nothing but still records, so the next build finds these steps."""

    def __init__(self, store: store_mod.Store, enabled: bool = True) -> None:
        self.store, self.enabled = store, enabled
        self.dir = cache_dir(store)

    def get(self, k: str) -> tuple[image.LayerRef, ...] | None:
        if not self.enabled:
            return None
        try:
            doc = json.loads((self.dir / k).read_text())
            layers = tuple(image.LayerRef.from_json(d) for d in doc["layers"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        if not all(self.store.has_blob(layer.digest) for layer in layers):
            return None  # pruned since: build the step again
        return layers

    def put(self, k: str, layers: tuple[image.LayerRef, ...]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        statefiles.write(self.dir / k, json.dumps({"layers": [layer.to_json() for layer in layers]}))


    def created(self, identity: str) -> str:
        """When the image of `identity` (its final key) was first built: now, the first time."""
        path = self.dir / f"image-{identity}"
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
            return str(json.loads(path.read_text())["created"])
        when = image.now()
        self.dir.mkdir(parents=True, exist_ok=True)
        statefiles.write(path, json.dumps({"created": when}))
        return when


def entries(store: store_mod.Store) -> list[tuple[image.LayerRef, ...]]:
    out: list[tuple[image.LayerRef, ...]] = []
    directory = cache_dir(store)
    if not directory.is_dir():
        return out
    for path in directory.iterdir():
        if path.name.startswith((".", "image-")):
            continue
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            out.append(tuple(image.LayerRef.from_json(d) for d in json.loads(path.read_text())["layers"]))
    return out


def reachable(store: store_mod.Store) -> tuple[set[str], set[str]]:
    """The blobs and layer chain ids the cache points to: garbage collection keeps them."""
    blobs: set[str] = set()
    chains: set[str] = set()
    for layers in entries(store):
        blobs.update(layer.digest for layer in layers)
        chains.update(image.chain_ids(layers))
    return blobs, chains


def usage(store: store_mod.Store) -> tuple[int, int]:
    """`system df`'s Build Cache: how many steps the cache keeps, and the bytes of their layers
    that no image uses (what dropping the cache would free)."""
    kept = entries(store)
    in_images = {layer.digest for record in store.list_images() for layer in record.layers}
    only_cached = {layer.digest: layer.size for layers in kept for layer in layers
                   if layer.digest not in in_images}
    return len(kept), sum(only_cached.values())


def clear(store: store_mod.Store) -> int:
    """Drop every entry (image prune -a); the blobs go with the next collection. How many went."""
    directory = cache_dir(store)
    if not directory.is_dir():
        return 0
    gone = 0
    for path in directory.iterdir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            gone += 0 if path.name.startswith(".") else 1
    return gone
