"""Untag and delete images as docker does, and remove the blobs and layers that no reference and no
container uses any more; what they take on disk."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence

import structlog

from runtime.images import archive, manifest, reference, store as store_mod, unpack

log = structlog.get_logger(__name__)


def _short_container(cid: str) -> str:
    """A container in docker's messages: its short ID (12 hex digits); a container made
    before IDs is named by its name, whole."""
    hexdigits = set("0123456789abcdef")
    return cid[:12] if len(cid) == 64 and set(cid) <= hexdigits else cid


class ImageInUse(store_mod.StoreError):
    """docker's conflict: a container or several names hold the image."""


class ImageNotFound(store_mod.StoreError):
    pass


@dataclasses.dataclass(frozen=True)
class Use:
    """A container that uses an image, as the caller found it."""
    container: str
    running: bool


Users = Mapping[str, Sequence[Use]]  # image id -> the containers that use it


@dataclasses.dataclass(frozen=True)
class Removal:
    """What removing one image did: the names dropped (refs.json keys), and its id when the image
    itself went, which docker prints as `Untagged:` and `Deleted:` lines."""
    image: store_mod.ImageRecord
    untagged: tuple[str, ...]
    deleted: bool


@dataclasses.dataclass(frozen=True)
class GcReport:
    blobs: tuple[str, ...]
    layers: tuple[str, ...]
    freed_bytes: int  # blobs and unpacked layers together: what the disk got back


def short_id(image_id: str) -> str:
    """docker's stringid.TruncateID."""
    return image_id.removeprefix("sha256:")[:12]


def is_dangling_key(key: str) -> bool:
    """A refs.json key that keeps an image without a name (`<none>:<none>`)."""
    return key.startswith(archive.DANGLING)


def _named(record: store_mod.ImageRecord) -> list[str]:
    return [k for k in record.references if not is_dangling_key(k)]


def users_from_roots(store: store_mod.Store) -> dict[str, tuple[Use, ...]]:
    """Image id -> the containers whose root is built from exactly its layers, none known to
    run: for callers that cannot ask runc (an image whose layers another shares is matched too)."""
    by_chain: dict[tuple[str, ...], list[Use]] = {}
    for cid, chain_ids in sorted(store.container_roots().items()):
        by_chain.setdefault(chain_ids, []).append(Use(cid, False))
    return {r.id: tuple(by_chain[r.chain_ids]) for r in store.list_images() if r.chain_ids in by_chain}


def remove_image(store: store_mod.Store, text: str, force: bool = False,
                 users: Users | None = None) -> Removal:
    """`docker rmi`: a name drops that name, and the image with its last one; an id drops every
    name and the image. docker's conflicts refuse, with its words: a name whose image a
    container uses (unless forced), an id a running container uses (always), an id a stopped
    container uses or several repositories name (unless forced). A forced last name of an image
    a running container uses leaves the image without a name, as docker keeps it.

    `users` come from the caller, who can ask runc; by default, the container roots on disk."""
    record = store.resolve(text)
    if record is None:
        raise ImageNotFound(f"no such image: {text}")
    using = tuple((users_from_roots(store) if users is None else users).get(record.id, ()))
    running = [u for u in using if u.running]
    named = _named(record)
    key = _key_given(store, text, record)
    if key is None:
        return _remove_by_id(store, record, named, using, running, force)
    if not force and using and _single_reference(named):
        raise ImageInUse(f'conflict: unable to remove repository reference "{text}" (must force) '
                         f"- container {_short_container(using[0].container)} is using its referenced image "
                         f"{short_id(record.id)}")
    doomed = [key]
    rest = [k for k in named if k != key]
    # docker: once a tag goes, digest names of the same repository alone do not keep the image
    if "@" not in key and rest and all("@" in k and store_mod.name_of(k) == store_mod.name_of(key)
                                       for k in rest):
        doomed += rest
    if len(doomed) < len(named):
        return _untag(store, record, doomed)
    if running:  # forced: the image stays for the container that runs it, without a name
        entry = store.read_refs()[key]
        return _untag(store, record, doomed, keep=entry)
    return _untag(store, record, doomed + _dangling(record), deleted=True)


def _key_given(store: store_mod.Store, text: str, record: store_mod.ImageRecord) -> str | None:
    """The refs.json key that `text` names when it is a name of the image, not its id."""
    refs = store.read_refs()
    with contextlib.suppress(reference.ReferenceError):
        parsed = reference.parse(text)
        return next((k for k in record.references if not is_dangling_key(k) and (
            k == str(parsed) or (parsed.digest and store_mod.name_of(k) == parsed.name
                                 and parsed.digest in (refs[k].manifest, refs[k].index)))), None)
    return None


def _remove_by_id(store, record, named, using, running, force) -> Removal:
    short = short_id(record.id)
    if running:
        raise ImageInUse(f"conflict: unable to delete {short} (cannot be forced) - image is being "
                         f"used by running container {_short_container(running[0].container)}")
    if not force and named and not _single_reference(named):
        raise ImageInUse(f"conflict: unable to delete {short} (must be forced) - image is "
                         "referenced in multiple repositories")
    if not force and using:
        raise ImageInUse(f"conflict: unable to delete {short} (must be forced) - image is being "
                         f"used by stopped container {_short_container(using[0].container)}")
    return _untag(store, record, named + _dangling(record), deleted=True)


def _dangling(record: store_mod.ImageRecord) -> list[str]:
    return [k for k in record.references if is_dangling_key(k)]


def _single_reference(keys: Sequence[str]) -> bool:
    """docker's isSingleReference: one name at most with a tag, and every name in one repository."""
    if len(keys) <= 1:
        return len(keys) == 1
    tagged = [k for k in keys if "@" not in k]
    if len(tagged) > 1:
        return False
    repositories = {store_mod.name_of(k) for k in keys}
    return len(repositories) == 1


def _untag(store: store_mod.Store, record: store_mod.ImageRecord, keys: Sequence[str],
           deleted: bool = False, keep: store_mod.RefEntry | None = None) -> Removal:
    changes: dict[str, store_mod.RefEntry | None] = {k: None for k in keys}
    if keep is not None:
        changes[archive.DANGLING + record.id.removeprefix("sha256:")] = keep
    with store.shared():  # a collection must not sweep our refs.json temp file away
        store.update_refs(changes)
    untagged = tuple(k for k in keys if not is_dangling_key(k))
    log.info("image.untagged", refs=list(untagged), id=record.id, deleted=deleted)
    return Removal(record, untagged, deleted)


def tag(store: store_mod.Store, source: str, target: str) -> str:
    """`docker tag`: `target` names the image `source` names (moved from any other image);
    the refs.json key made."""
    record = store.resolve(source)
    if record is None:
        raise ImageNotFound(f"no such image: {source}")
    ref = reference.parse(target)
    if ref.digest:
        raise store_mod.StoreError(f"refusing to create a tag with a digest reference: {target}")
    entry = store.read_refs().get(next(iter(record.references)))
    if entry is None:
        raise ImageNotFound(f"no such image: {source}")
    # A name makes the image no longer dangling, as in docker.
    changes: dict[str, store_mod.RefEntry | None] = {k: None for k in _dangling(record)}
    changes[str(ref)] = entry
    with store.shared():
        store.update_refs(changes)
    log.info("image.tagged", ref=str(ref), id=record.id)
    return str(ref)


def prune(store: store_mod.Store, all_images: bool = False, users: Users | None = None,
          keep: Callable[[store_mod.ImageRecord], bool] = lambda record: False) -> list[Removal]:
    """`docker image prune`: the images without a name (with `all_images`: every image) that no
    container uses, but those `keep` spares; their references dropped, one Removal each.
    With `all_images` the build cache goes too (the next collection frees its layers)."""
    from runtime.build import cache  # here, not above: the build imports this package

    if all_images:
        cache.clear(store)
    users = users_from_roots(store) if users is None else users
    roots = set(store.container_roots().values())
    gone = []
    for record in sorted(store.list_images(), key=lambda r: r.id):
        if users.get(record.id) or record.chain_ids in roots or keep(record):
            continue
        if _named(record) and not all_images:
            continue
        gone.append(_untag(store, record, record.references, deleted=True))
    return gone


def collect(store: store_mod.Store) -> GcReport:
    """Remove every blob and layer that no reference reaches and no container's root uses."""
    from runtime.build import cache  # here, not above: the build imports this package

    with store.exclusive():
        keep_blobs, keep_layers = _reachable(store, store.read_refs().values())
        keep_layers |= store.layers_in_use()
        cached_blobs, cached_layers = cache.reachable(store)  # the build cache's steps stay hits
        keep_blobs |= cached_blobs
        keep_layers |= cached_layers
        freed = 0
        gone_blobs = sorted(store.blob_digests() - keep_blobs)
        for digest in gone_blobs:
            path = store.blob_path(digest)
            with contextlib.suppress(FileNotFoundError):
                freed += path.stat().st_size
                path.unlink()
        gone_layers = sorted(store.layer_ids() - keep_layers)
        for chain_id in gone_layers:
            freed += tree_bytes(store.layer_dir(chain_id))
            unpack.remove_layer(store, chain_id)
        _sweep_leftovers(store)
    if gone_blobs or gone_layers:
        log.info("images.collected", blobs=len(gone_blobs), layers=len(gone_layers), freed_bytes=freed)
    return GcReport(tuple(gone_blobs), tuple(gone_layers), freed)


def _reachable(store: store_mod.Store, entries: Iterable[store_mod.RefEntry]) -> tuple[set[str], set[str]]:
    blobs: set[str] = set()
    layers: set[str] = set()
    for entry in entries:
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


# -- disk usage
def tree_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes of the regular files under `path` (or of `path` itself), links not followed."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(folder, name))
                total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


@dataclasses.dataclass(frozen=True)
class ImageUsage:
    image: store_mod.ImageRecord
    size: int    # its blobs and unpacked layers on disk
    shared: int  # of which other images hold too


@dataclasses.dataclass(frozen=True)
class Usage:
    """`docker system df` for the store: every blob and layer on disk, and what a prune of every
    image no container uses would give back."""
    images: tuple[ImageUsage, ...]
    size: int
    reclaimable: int


def usage(store: store_mod.Store, used: set[str]) -> Usage:
    """What the store takes on disk; `used`: the ids of images some container uses (whose blobs
    and layers, like the layers of every container's root, are not reclaimable)."""
    records = store.list_images()
    sizes: dict[tuple[str, str], int] = {}
    for digest in store.blob_digests():
        with contextlib.suppress(FileNotFoundError):
            sizes["blob", digest] = store.blob_path(digest).stat().st_size
    for chain_id in store.layer_ids():
        sizes["layer", chain_id] = tree_bytes(store.layer_dir(chain_id))
    holders: dict[tuple[str, str], set[str]] = {}
    items_of = {}
    for record in records:
        items = {("blob", d) for d in (record.digest, record.manifest_digest, record.id,
                                       *(layer.digest for layer in record.layers))}
        items |= {("layer", c) for c in record.chain_ids}
        items_of[record.id] = items
        for item in items:
            holders.setdefault(item, set()).add(record.id)
    kept = {item for r in records if r.id in used for item in items_of[r.id]}
    kept |= {("layer", c) for c in store.layers_in_use()}
    per_image = tuple(ImageUsage(r, sum(sizes.get(i, 0) for i in items_of[r.id]),
                                 sum(sizes.get(i, 0) for i in items_of[r.id] if len(holders[i]) > 1))
                      for r in records)
    return Usage(per_image, sum(sizes.values()),
                 sum(size for item, size in sizes.items() if item not in kept))
