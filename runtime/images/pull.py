"""Pull an image: resolve the manifest for this host, fetch missing blobs in parallel, unpack, then tag."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable

import structlog

from runtime.images import auth, manifest, reference, registry, store as store_mod, unpack

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True)
class Progress:
    """One step of one layer, for a progress display: status is docker's wording."""
    layer: str     # short id (12 hex of the blob digest)
    status: str    # Waiting, Downloading, Verifying Checksum, Download complete, Extracting, Pull complete,
                   # Already exists
    current: int = 0
    total: int = 0


ProgressFn = Callable[[Progress], None]
MAX_CONFIG = 16 << 20  # an image config is small; a huge one is an attack or a mistake


async def pull(store: store_mod.Store, ref: str | reference.Reference, *,
               platform: manifest.Platform | None = None, credentials: auth.Credentials | None = None,
               auth_config: str | None = None, options: registry.Options | None = None,
               progress: ProgressFn | None = None) -> store_mod.ImageRecord:
    """Make `ref` present in the store (blobs verified, layers unpacked) and point the reference at it."""
    ref = reference.parse(ref) if isinstance(ref, str) else ref
    options = options or registry.Options.from_env()
    creds = credentials or auth.load(ref.registry, auth_config)
    report = progress or (lambda p: None)
    async with registry.session(options) as http:
        client = registry.Client(http, ref, creds, options)
        async with _shared(store):
            manifest_digest, index_digest = await _fetch_manifest(
                store, client, ref, platform or manifest.host())
            record = await _fetch_image(store, client, manifest_digest, options, report)
            store.update_refs({str(ref): store_mod.RefEntry(manifest_digest, index_digest)})
    log.info("image.pulled", ref=str(ref), digest=index_digest or manifest_digest, id=record.id)
    return store.resolve_written(str(ref))


@contextlib.asynccontextmanager
async def _shared(store: store_mod.Store) -> AsyncIterator[None]:
    """The store's shared lock, waited for in a thread: a running collection must not stall the loop."""
    lock = store.shared()
    entered = asyncio.ensure_future(asyncio.to_thread(lock.__enter__))
    try:
        await asyncio.shield(entered)
    except asyncio.CancelledError:
        await asyncio.wait([entered])  # the thread takes the lock anyway: give it back
        if not entered.cancelled() and entered.exception() is None:
            lock.__exit__(None, None, None)
        raise
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


async def _fetch_manifest(store: store_mod.Store, client: registry.Client, ref: reference.Reference,
                          want: manifest.Platform) -> tuple[str, str | None]:
    data, media_type, digest = await client.manifest(ref.object)
    store.write_blob(data, digest)
    if media_type not in manifest.INDEX_TYPES:
        return digest, None
    index_digest = digest
    chosen = manifest.choose(manifest.parse_index(data), want)
    data, media_type, digest = await client.manifest(chosen.digest)
    if media_type not in manifest.MANIFEST_TYPES:
        raise manifest.ManifestError(f"{ref}: index entry for {want} is not an image manifest ({media_type})")
    store.write_blob(data, digest)
    return digest, index_digest


async def _fetch_image(store: store_mod.Store, client: registry.Client, manifest_digest: str,
                       options: registry.Options, report: ProgressFn) -> store_mod.ImageRecord:
    m = manifest.parse_manifest(store.read_blob(manifest_digest))
    if m.config.size > MAX_CONFIG:  # it is read whole into memory, here and by every record of the image
        raise manifest.ManifestError(f"image config of {m.config.size} bytes (at most {MAX_CONFIG})")
    if not store.has_blob(m.config.digest):
        await client.fetch_blob(store, m.config)
    record = store.record(manifest_digest)
    limit = asyncio.Semaphore(options.max_concurrent_downloads)
    try:
        async with asyncio.TaskGroup() as group:
            for layer in record.layers:
                group.create_task(_ensure_layer(store, client, layer, limit, report))
    except BaseExceptionGroup as group_error:
        raise _first(group_error) from None
    return record


def _first(error: BaseExceptionGroup) -> BaseException:
    """The failure of the first layer that failed: the others were cancelled because of it."""
    first = error.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


async def _ensure_layer(store: store_mod.Store, client: registry.Client, layer: store_mod.LayerInfo,
                        limit: asyncio.Semaphore, report: ProgressFn) -> None:
    short = layer.digest.split(":", 1)[1][:12]
    if store.has_layer(layer.chain_id):
        report(Progress(short, "Already exists"))
        return
    if not store.has_blob(layer.digest):
        report(Progress(short, "Waiting"))
        async with limit:
            on_bytes = _throttled(short, layer.size, report)
            on_bytes(0)
            await client.fetch_blob(store, manifest.Descriptor(layer.media_type, layer.digest, layer.size),
                                    on_bytes)
        report(Progress(short, "Download complete", layer.size, layer.size))
    report(Progress(short, "Extracting"))
    await _finish_in_thread(unpack.ensure_layer, store, layer.chain_id, layer.diff_id,
                            store.blob_path(layer.digest))
    report(Progress(short, "Pull complete"))


# A display redraws at most ten times a second: a report per 64 KiB chunk would cost more
# than the download itself at loopback speed.
REPORT_EVERY = 0.1


def _throttled(short: str, size: int, report: ProgressFn,
               clock: Callable[[], float] = time.monotonic) -> Callable[[int], None]:
    """on_bytes for one layer's download: Downloading at once and then at most every
    REPORT_EVERY seconds, and Verifying Checksum once the last byte is in (the blob's digest
    is checked before it is kept)."""
    done = 0
    last = -REPORT_EVERY

    def on_bytes(n: int) -> None:
        nonlocal done, last
        done += n
        if size > 0 and done >= size:
            if done - n < size:
                report(Progress(short, "Verifying Checksum", done, size))
            return
        now = clock()
        if now - last >= REPORT_EVERY:
            last = now
            report(Progress(short, "Downloading", done, size))

    return on_bytes


async def _finish_in_thread(fn, *args) -> None:
    """Run fn in a thread; if we are cancelled (another layer failed), still wait for it to end.

    A thread cannot be stopped: returning early would leave it writing while the caller
    reports failure and drops the store lock.
    """
    work = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    try:
        await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        raise


POLICIES = ("always", "missing", "never", "if_not_present", "daily", "weekly", "build")


async def ensure(store: store_mod.Store, ref: str, pull_policy: str = "missing",
                 **pull_args) -> store_mod.ImageRecord:
    """The image a service needs, pulled according to compose's `pull_policy` (default: only if missing)."""
    policy = pull_policy or "missing"
    if policy not in POLICIES and not policy.startswith("every_"):
        raise ValueError(f"unknown pull_policy {pull_policy!r}")
    local = store.resolve(ref)
    if policy in ("never", "build"):
        if local is None:
            raise store_mod.StoreError(f"image {ref} is not in the store and pull_policy is {policy}"
                                       + (" (pcompose does not build images)" if policy == "build" else ""))
        return local
    if local is not None and policy in ("missing", "if_not_present"):
        return local
    # always, and the periodic policies (daily, weekly, every_<duration>): the registry is asked each time;
    # blobs and layers already present are not fetched again.
    return await pull(store, ref, **pull_args)


async def login(registry_host: str, creds: auth.Credentials, *, auth_config: str | None = None,
                options: registry.Options | None = None) -> str:
    """Check the credentials against the registry, then store them in docker's config.json."""
    host = "docker.io" if registry_host in auth.HUB_KEYS else registry_host
    ref = reference.Reference(host, "library/busybox" if host == "docker.io" else "x")
    options = options or registry.Options.from_env()
    async with registry.session(options) as http:
        await registry.Client(http, ref, creds, options).ping()
    path = auth.save(host, creds, auth_config)
    log.info("registry.logged_in", registry=host, user=creds.username)
    return str(path)
