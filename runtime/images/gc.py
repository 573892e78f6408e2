"""Untag images and remove the blobs and layers that no reference and no container uses any more."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil

import structlog

from runtime.images import manifest, reference, store as store_mod, unpack

log = structlog.get_logger(__name__)


class ImageInUse(store_mod.StoreError):
    pass


class ImageNotFound(store_mod.StoreError):
    pass


@dataclasses.dataclass(frozen=True)
class GcReport:
    blobs: tuple[str, ...]
    layers: tuple[str, ...]
    freed_bytes: int


def remove_image(store: store_mod.Store, text: str, force: bool = False) -> tuple[str, ...]:
    """Untag like `docker rmi`: a reference drops that name; an id drops all names (several need force)."""
    record = store.resolve(text)
    if record is None:
        raise ImageNotFound(f"no such image: {text}")
    refs = store.read_refs()
    key = None
    with contextlib.suppress(reference.ReferenceError):
        parsed = reference.parse(text)
        key = next((k for k in record.references if k == str(parsed) or (
            parsed.digest and store_mod.name_of(k) == parsed.name
            and parsed.digest in (refs[k].manifest, refs[k].index))), None)
    doomed = (key,) if key else record.references
    if not key and len(doomed) > 1 and not force:
        raise ImageInUse(f"image {record.id[7:19]} is referenced by {len(doomed)} names "
                         f"({', '.join(doomed)}); remove them by name or use --force")
    last = set(doomed) >= set(record.references)
    if last and not force and record.chain_ids and record.chain_ids[-1] in store.layers_in_use():
        raise ImageInUse(f"image {text} is used by a container; remove the container first or use --force")
    with store.shared():  # a collection must not sweep our refs.json temp file away
        store.update_refs({k: None for k in doomed})
    log.info("image.untagged", refs=list(doomed), id=record.id)
    return doomed


def collect(store: store_mod.Store) -> GcReport:
    """Remove every blob and layer that no reference reaches and no container's root uses."""
    with store.exclusive():
        keep_blobs, keep_layers = _reachable(store)
        keep_layers |= store.layers_in_use()
        freed = 0
        gone_blobs = sorted(store.blob_digests() - keep_blobs)
        for digest in gone_blobs:
            path = store.blob_path(digest)
            with contextlib.suppress(FileNotFoundError):
                freed += path.stat().st_size
                path.unlink()
        gone_layers = sorted(store.layer_ids() - keep_layers)
        for chain_id in gone_layers:
            unpack.remove_layer(store, chain_id)
        _sweep_leftovers(store)
    if gone_blobs or gone_layers:
        log.info("images.collected", blobs=len(gone_blobs), layers=len(gone_layers), freed_bytes=freed)
    return GcReport(tuple(gone_blobs), tuple(gone_layers), freed)


def _reachable(store: store_mod.Store) -> tuple[set[str], set[str]]:
    blobs: set[str] = set()
    layers: set[str] = set()
    for entry in store.read_refs().values():
        if entry.index:
            blobs.add(entry.index)
        blobs.add(entry.manifest)
        try:
            record = store.record(entry.manifest)
        except (store_mod.StoreError, manifest.ManifestError) as err:
            log.warning("image.ref_skipped", manifest=entry.manifest, error=str(err))
            continue
        blobs.add(record.id)
        blobs.update(layer.digest for layer in record.layers)
        layers.update(record.chain_ids)
    return blobs, layers


def _sweep_leftovers(store: store_mod.Store) -> None:
    """Temp files of writers that died halfway; safe because writers hold the shared lock."""
    for path in store.ingest_dir.iterdir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    for path in store.layers_dir.glob(".tmp-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in store.images_dir.glob(".refs.*"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    links = store.layers_dir / "l"
    for link in links.iterdir():
        if not os.path.exists(link):
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
