"""Pushing an image of the store to a registry, as `docker push` does: each blob the registry
lacks (asked with HEAD first) uploaded whole or in chunks, then the manifest under the tag.

The manifest goes up byte for byte as the store keeps it, so the registry's digest is the
image's own. Credentials come from `pcompose login`'s store (docker's config.json) and are
sent only when the registry asks (basic, or a bearer token for `pull,push`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import urllib.parse
from collections.abc import Callable

import aiohttp
import structlog

from runtime.images import auth, manifest, reference, registry, store as store_mod

log = structlog.get_logger(__name__)

MONOLITHIC_MAX = 16 << 20  # a blob up to this size goes up in one PUT, a larger one in chunks
CHUNK = 8 << 20


class PushError(registry.RegistryError):
    """Nothing to push, or the registry refused part of it."""


@dataclasses.dataclass(frozen=True)
class Progress:
    """One blob's step: `blob` its short digest; status Preparing, Waiting, Pushing (with
    bytes), Pushed or Layer already exists, as docker push reports them."""

    blob: str
    status: str
    current: int = 0
    total: int = 0


ProgressFn = Callable[[Progress], None]


@dataclasses.dataclass(frozen=True)
class Pushed:
    """What went up: the manifest's digest and size, and how many blobs the registry lacked."""

    ref: str
    digest: str
    size: int
    uploaded: int


class _Uploader(registry.Client):
    """The registry client with the verbs a push needs (HEAD, POST, PATCH, PUT)."""

    async def send(self, method: str, url: str, what: str, *, headers: dict[str, str] | None = None,
                   data: bytes | None = None, ok: tuple[int, ...] = (200, 201, 202, 204),
                   missing_ok: bool = False) -> tuple[int, dict[str, str]]:
        """(status, headers) of one request, asking again with credentials on a 401."""
        resp = await self.request(method, url, headers or {}, what, what, data=data)
        async with resp:
            status, got = resp.status, dict(resp.headers)
            try:
                body = (await resp.text(errors="replace"))[:300] if status >= 400 else ""
            except aiohttp.ClientError as err:
                raise registry.RegistryError(f"{self.ref.registry}: cannot {what}: {err}") from None
        if status == 404 and missing_ok:
            return status, got
        if status in ok:
            return status, got
        if status == 403:
            raise registry.Unauthorized(f"{self.ref.registry}: {what} denied: {body.strip()}")
        raise PushError(f"{self.ref.registry}: {what}: HTTP {status}: {body.strip()}")

    def challenge(self, challenge: auth.Challenge) -> auth.Challenge:
        return _push_scope(challenge, self.ref)

    def url(self, location: str) -> str:
        return urllib.parse.urljoin(self.origin + "/", location)


def _push_scope(challenge: auth.Challenge, ref: reference.Reference) -> auth.Challenge:
    """A bearer challenge that names no scope gets `pull,push` on the repository."""
    if challenge.scheme != "bearer" or challenge.get("scope"):
        return challenge
    scope = ("scope", f"repository:{ref.repository}:pull,push")
    return dataclasses.replace(challenge, params=(*challenge.params, scope))


def _with_digest(location: str, digest: str) -> str:
    return location + ("&" if "?" in location else "?") + "digest=" + urllib.parse.quote(digest)


async def push(store: store_mod.Store, ref: str | reference.Reference, *,
               credentials: auth.Credentials | None = None, auth_config: str | None = None,
               options: registry.Options | None = None, progress: ProgressFn | None = None) -> Pushed:
    """Send the image the store has under `ref` to the registry `ref` names, under its tag."""
    ref = reference.parse(ref) if isinstance(ref, str) else ref
    record = store.resolve(str(ref))
    if record is None:
        raise PushError(f"{ref.familiar()}: no such image here (build, pull or tag it first)")
    options = options or registry.Options.from_env()
    creds = credentials or auth.load(ref.registry, auth_config)
    report = progress or (lambda p: None)
    lock = store.shared()  # blobs stay while they are read: a collection waits
    await asyncio.to_thread(lock.__enter__)
    try:
        data = store.read_blob(record.manifest_digest)
        parsed = manifest.parse_manifest(data)
        media_type = manifest.media_type_of(data)
        blobs = [*parsed.layers, parsed.config]
        for desc in blobs:
            if not store.has_blob(desc.digest):
                raise PushError(f"{ref.familiar()}: blob {desc.digest} is missing from the store")
        async with registry.session(options) as http:
            client = _Uploader(http, ref, creds, options)
            limit = asyncio.Semaphore(max(options.max_concurrent_downloads, 1))
            for desc in parsed.layers:
                report(Progress(_short(desc.digest), "Preparing"))
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = [group.create_task(_blob(store, client, desc, limit, report)) for desc in blobs]
            except BaseExceptionGroup as errors:
                raise _first(errors) from None
            tag = ref.digest or ref.tag or reference.DEFAULT_TAG
            what = f"put manifest {ref.familiar()}"
            await client.send("PUT", f"{client.origin}/v2/{ref.repository}/manifests/{tag}", what,
                              headers={"Content-Type": media_type}, data=data, ok=(200, 201, 202))
    finally:
        lock.__exit__(None, None, None)
    uploaded = sum(1 for t in tasks if t.result())
    log.info("image.pushed", ref=str(ref), digest=record.manifest_digest, uploaded=uploaded)
    return Pushed(ref=str(ref), digest=record.manifest_digest, size=len(data), uploaded=uploaded)


async def _blob(store: store_mod.Store, client: _Uploader, desc: manifest.Descriptor,
                limit: asyncio.Semaphore, report: ProgressFn) -> bool:
    """Make the registry have one blob; True if it had to be uploaded."""
    short = _short(desc.digest)
    repo = client.ref.repository
    async with limit:
        what = f"check blob {short}"
        status, _ = await client.send("HEAD", f"{client.origin}/v2/{repo}/blobs/{desc.digest}", what,
                                      ok=(200,), missing_ok=True)
        if status == 200:
            report(Progress(short, "Layer already exists"))
            return False
        what = f"upload blob {short}"
        _, got = await client.send("POST", f"{client.origin}/v2/{repo}/blobs/uploads/", what, ok=(202,))
        location = client.url(_location(got, what, client))
        path = store.blob_path(desc.digest)
        size = os.path.getsize(path)
        report(Progress(short, "Pushing", 0, size))
        if size <= MONOLITHIC_MAX:
            data = await asyncio.to_thread(_read, path, 0, size)
            await client.send("PUT", _with_digest(location, desc.digest), what, data=data,
                              headers={"Content-Type": "application/octet-stream"}, ok=(201,))
        else:
            start = 0
            while start < size:
                chunk = await asyncio.to_thread(_read, path, start, CHUNK)
                end = start + len(chunk) - 1
                _, got = await client.send(
                    "PATCH", location, what, data=chunk, ok=(202,),
                    headers={"Content-Type": "application/octet-stream", "Content-Range": f"{start}-{end}"})
                location = client.url(_location(got, what, client))
                start = end + 1
                report(Progress(short, "Pushing", start, size))
            await client.send("PUT", _with_digest(location, desc.digest), what, ok=(201,))
        report(Progress(short, "Pushed", size, size))
        return True


def _read(path: str | os.PathLike[str], offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def _location(headers: dict[str, str], what: str, client: _Uploader) -> str:
    location = headers.get("Location")
    if not location:
        raise PushError(f"{client.ref.registry}: {what}: the registry gave no upload location")
    return location


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _first(error: BaseExceptionGroup) -> BaseException:
    first = error.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
