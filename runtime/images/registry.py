"""A client of the OCI distribution API on aiohttp: manifests, blobs, and the token and basic auth dance."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import urllib.parse
from collections.abc import Callable

import aiohttp
import structlog

from runtime.images import auth, manifest, reference, store as store_mod

log = structlog.get_logger(__name__)

CHUNK = 1 << 18
# Client.manifest() hides the module inside the class, annotations included.
_Descriptor = manifest.Descriptor

MAX_MANIFEST = 4 << 20  # as docker: a manifest is small; a huge one is an attack or a mistake


class RegistryError(Exception):
    """The registry refused or failed a request; the message names the registry and the object."""


class NotFound(RegistryError):
    pass


class Unauthorized(RegistryError):
    pass


@dataclasses.dataclass(frozen=True)
class Options:
    """How to reach registries. Plain HTTP only for hosts in `insecure` and loopback (as docker does)."""
    insecure: frozenset[str] = frozenset()
    max_concurrent_downloads: int = 3
    user_agent: str = "pcompose/0.1"

    @staticmethod
    def from_env(extra_insecure: tuple[str, ...] = ()) -> Options:
        env = os.environ.get("PCOMPOSE_INSECURE_REGISTRIES", "")
        return Options(insecure=frozenset(h for h in (*env.split(","), *extra_insecure) if h))

    def scheme(self, host: str) -> str:
        return "http" if host in self.insecure or _is_loopback(host) else "https"


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Client:
    """One repository on one registry; remembers the token it was given for the session."""

    def __init__(self, session: aiohttp.ClientSession, ref: reference.Reference,
                 creds: auth.Credentials | None, options: Options) -> None:
        self.session = session
        self.ref = ref
        self.creds = creds
        self.options = options
        self.origin = f"{options.scheme(ref.api_host)}://{ref.api_host}"
        self._authorization: str | None = None

    async def request(self, method: str, url: str, headers: dict[str, str], what: str, action: str, *,
                      data: bytes | None = None) -> aiohttp.ClientResponse:
        """The response (its body unread) to one request, asked again with credentials when the
        registry answers 401; `action` says what failed when the registry cannot be reached."""
        headers = {"User-Agent": self.options.user_agent, **headers}
        for attempt in range(2):
            if self._authorization:
                headers["Authorization"] = self._authorization
            try:
                resp = await self.session.request(method, url, headers=headers, data=data)
            except aiohttp.ClientError as err:
                raise RegistryError(f"{self.ref.registry}: cannot {action}: {err}") from None
            if resp.status != 401:
                return resp
            challenge = resp.headers.get("WWW-Authenticate", "")
            resp.release()
            if attempt == 1 or not challenge:
                raise Unauthorized(self._refused(what))
            self._authorization = await self._answer(self.challenge(auth.parse_challenge(challenge)), what)
        raise AssertionError("unreachable")

    def challenge(self, challenge: auth.Challenge) -> auth.Challenge:
        """The registry's challenge as this client answers it (a pusher asks for more scope)."""
        return challenge

    async def _get(self, url: str, headers: dict[str, str], what: str) -> aiohttp.ClientResponse:
        resp = await self.request("GET", url, headers, what, f"fetch {what}")
        if resp.status == 404:
            resp.release()
            raise NotFound(f"{self.ref.registry}: {what} not found")
        if resp.status >= 400:
            body = (await resp.text())[:300]
            resp.release()
            if resp.status == 403:
                raise Unauthorized(f"{self.ref.registry}: access to {what} denied: {body.strip()}")
            raise RegistryError(f"{self.ref.registry}: {what}: HTTP {resp.status}: {body.strip()}")
        return resp

    def _refused(self, what: str) -> str:
        if self.creds:
            return f"{self.ref.registry}: login refused for user {self.creds.username!r} ({what})"
        return (f"{self.ref.registry}: authentication required for {what}; "
                f"run `pcompose login {self.ref.registry}`")

    async def _answer(self, challenge: auth.Challenge, what: str) -> str:
        if challenge.scheme == "basic":
            if not self.creds:
                raise Unauthorized(self._refused(what))
            return auth.basic_header(self.creds)
        if challenge.scheme != "bearer" or not challenge.get("realm"):
            raise RegistryError(f"{self.ref.registry}: unsupported auth challenge {challenge.scheme!r}")
        params = {k: v for k, v in (("service", challenge.get("service")),
                                    ("scope", challenge.get("scope") or
                                     f"repository:{self.ref.repository}:pull")) if v}
        realm = urllib.parse.urlsplit(challenge.get("realm"))
        if realm.scheme != "https" and self.options.scheme(realm.netloc.rpartition("@")[2]) != "http":
            # credentials in clear text only where plain HTTP was allowed for the registry itself
            raise RegistryError(f"{self.ref.registry}: token server {realm.geturl()} is not HTTPS")
        headers = {"Authorization": auth.basic_header(self.creds)} if self.creds else {}
        try:
            async with self.session.get(challenge.get("realm"), params=params, headers=headers) as resp:
                if resp.status in (401, 403):
                    raise Unauthorized(self._refused(what))
                if resp.status >= 400:
                    raise RegistryError(f"{self.ref.registry}: token server answered HTTP {resp.status}")
                doc = await resp.json(content_type=None)
        except aiohttp.ClientError as err:
            raise RegistryError(
                f"{self.ref.registry}: token server {challenge.get('realm')}: {err}") from None
        token = doc.get("token") or doc.get("access_token")
        if not token:
            raise RegistryError(f"{self.ref.registry}: token server gave no token")
        return f"Bearer {token}"

    async def ping(self) -> None:
        """GET /v2/ with the credentials: the check `login` makes."""
        resp = await self._get(f"{self.origin}/v2/", {}, "the API root")
        resp.release()

    async def manifest(self, obj: str) -> tuple[bytes, str, str]:
        """The manifest or index for a tag or digest: (bytes, media type, digest of the bytes)."""
        what = f"manifest {self.ref.name}:{obj}" if ":" not in obj else f"manifest {self.ref.name}@{obj}"
        resp = await self._get(f"{self.origin}/v2/{self.ref.repository}/manifests/{obj}",
                               {"Accept": manifest.ACCEPT}, what)
        async with resp:
            chunks: list[bytes] = []
            async for chunk in resp.content.iter_chunked(1 << 16):
                chunks.append(chunk)
                if sum(map(len, chunks)) > MAX_MANIFEST:
                    raise RegistryError(f"{self.ref.registry}: {what} is larger than {MAX_MANIFEST} bytes")
            data = b"".join(chunks)
            header_type = resp.headers.get("Content-Type", "").split(";")[0]
        digest = manifest.digest_of(data)
        if reference.is_digest(obj) and digest != obj:
            raise store_mod.DigestMismatch(f"{what}: content hashes to {digest}")
        return data, manifest.media_type_of(data, header_type), digest

    async def fetch_blob(self, store: store_mod.Store, desc: _Descriptor,
                         on_bytes: Callable[[int], None] | None = None) -> str:
        """Download a blob into the store, verified against its digest; nothing stays if it fails."""
        what = f"blob {desc.digest[:19]} of {self.ref.name}"
        resp = await self._get(f"{self.origin}/v2/{self.ref.repository}/blobs/{desc.digest}", {}, what)
        async with resp:
            with store.writer(desc.digest) as writer:
                try:
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        writer.write(chunk)
                        if on_bytes:
                            on_bytes(len(chunk))
                except aiohttp.ClientError as err:
                    raise RegistryError(f"{self.ref.registry}: {what}: download broke off: {err}") from None
                if desc.size >= 0 and writer.size != desc.size:
                    raise store_mod.DigestMismatch(
                        f"{what}: got {writer.size} bytes, manifest says {desc.size}")
                return writer.commit()


def session(options: Options) -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)
    connector = aiohttp.TCPConnector(limit_per_host=max(options.max_concurrent_downloads, 2) + 2)
    return aiohttp.ClientSession(timeout=timeout, connector=connector)
