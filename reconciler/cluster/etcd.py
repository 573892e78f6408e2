"""A small async etcd v3 client over etcd's JSON gateway (/v3/...), with endpoint failover.

Every request has a deadline and moves to the next endpoint on a connection error, a timeout
or gRPC code 14 (unavailable); watches carry `Grpc-Metadata-hasleader: true` (a member without
a leader ends them instead of holding them open), probe /health while idle (a stopped member
sends nothing, not even an error) and resume after the last response delivered whole, from
its last event's mod_revision + 1: a response's header.revision may be past events that were
never sent. PRIMITIVES.md ("etcd 3.4 ... and the client") lists the facts this rests on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

import aiohttp
import structlog

log = structlog.get_logger(__name__)

UNAVAILABLE = 14  # gRPC codes, as the gateway reports them
OUT_OF_RANGE = 11  # a compacted (or future) revision
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
_ROTATE_CODES = {UNAVAILABLE, DEADLINE_EXCEEDED}
MAX_LINE = 64 * 1024 * 1024  # one watch response, as one JSON line (a catch-up batch)
NO_LEADER = {"Grpc-Metadata-hasleader": "true"}


class EtcdError(Exception):
    """etcd refused a request; `code` is the gRPC code (0 when the gateway gave none)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class Unavailable(EtcdError):
    """No endpoint answered within the deadline."""

    def __init__(self, message: str) -> None:
        super().__init__(message, UNAVAILABLE)


class Compacted(EtcdError):
    """The revision asked for is compacted: re-list at a pinned revision, watch from it + 1."""

    def __init__(self, compact_revision: int, message: str = "") -> None:
        super().__init__(message or f"revision compacted (compact revision {compact_revision})",
                         OUT_OF_RANGE)
        self.compact_revision = compact_revision


@dataclass(frozen=True)
class KV:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    lease: int = 0

    def json(self) -> Any:
        return json.loads(self.value)


@dataclass(frozen=True)
class Event:
    type: Literal["put", "delete"]
    kv: KV
    revision: int  # the event's own revision (its kv's mod_revision)


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: str | bytes) -> bytes:
    """The range_end that makes a range or watch of every key starting with `prefix`."""
    raw = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"  # every key


def _kv(data: dict) -> KV:
    return KV(_unb64(data.get("key", "")).decode(errors="surrogateescape"),
              _unb64(data.get("value", "")), int(data.get("mod_revision", 0)),
              int(data.get("create_revision", 0)), int(data.get("lease", 0)))


# Operations and comparisons of a transaction, in the gateway's form.
def put_op(key: str, value: bytes | str, *, lease: int | None = None) -> dict:
    body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        body["lease"] = str(lease)
    return {"request_put": body}


def delete_op(key: str, *, prefix: bool = False) -> dict:
    body = {"key": _b64(key)}
    if prefix:
        body["range_end"] = _b64(prefix_end(key))
    return {"request_delete_range": body}


def range_op(key: str) -> dict:
    return {"request_range": {"key": _b64(key)}}


_RESULTS = {"=": "EQUAL", "!=": "NOT_EQUAL", ">": "GREATER", "<": "LESS"}


def compare(key: str, target: Literal["create", "mod", "version", "value", "lease"], op: str,
            operand: int | str | bytes) -> dict:
    """`compare("k", "create", "=", 0)`: the key does not exist."""
    field = {"create": "create_revision", "mod": "mod_revision", "version": "version",
             "value": "value", "lease": "lease"}[target]
    value = _b64(operand) if target == "value" and not isinstance(operand, int) else str(operand)
    return {"key": _b64(key), "target": target.upper(), "result": _RESULTS[op], field: value}


def kvs_of(response: dict) -> list[KV]:
    """The keys of a txn's range response (`txn(...)[1][i]`)."""
    return [_kv(kv) for kv in response.get("response_range", {}).get("kvs", [])]


class Client:
    """`client = Client(["http://127.0.0.1:2379", ...])`; `await client.close()` at the end.

    `timeout` bounds one attempt at one endpoint; a request tries every endpoint, in turn,
    within twice that (a leader election takes about 2 s), then raises Unavailable. As with
    any etcd client, a write whose attempt timed out may still be applied later (a stopped
    member wakes up with it queued): write what is safe to repeat, or compare in a txn."""

    def __init__(self, endpoints: Sequence[str], *, ca: str | None = None,
                 cert: str | None = None, key: str | None = None, timeout: float = 2.0) -> None:
        if not endpoints:
            raise ValueError("etcd: no endpoints")
        self.endpoints = [e.rstrip("/") if "://" in e else f"http://{e.rstrip('/')}"
                          for e in endpoints]
        self.timeout = timeout
        self._current = 0
        self._ssl: ssl.SSLContext | None = None
        if ca or cert or any(e.startswith("https://") for e in self.endpoints):
            self._ssl = ssl.create_default_context(cafile=ca)
            if cert:
                self._ssl.load_cert_chain(cert, key)
        self._session: aiohttp.ClientSession | None = None

    @property
    def endpoint(self) -> str:
        """The endpoint in use: requests go there until it fails."""
        return self.endpoints[self._current]

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl else False),
                timeout=aiohttp.ClientTimeout(total=None))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _rotate(self, failed: int) -> None:
        if self._current == failed:
            self._current = (failed + 1) % len(self.endpoints)

    async def _post(self, path: str, body: dict) -> dict:
        """One request, moving along the endpoints until one answers or the deadline passed."""
        deadline = time.monotonic() + 2 * self.timeout
        errors: list[str] = []
        pause = 0.1
        while True:
            index = self._current
            left = deadline - time.monotonic()
            try:
                return await self._attempt(index, path, body, min(self.timeout, left))
            except (aiohttp.ClientError, TimeoutError, OSError, _Retry) as error:
                errors.append(f"{self.endpoints[index]}: {_describe(error)}")
                self._rotate(index)
            if time.monotonic() + 0.05 >= deadline:
                raise Unavailable(f"etcd unavailable ({'; '.join(errors[-len(self.endpoints):])})")
            if self._current == 0 or len(self.endpoints) == 1:
                # A whole round failed: give an election a moment, and a dead cluster fewer
                # connection attempts the longer it stays dead.
                await asyncio.sleep(min(pause, max(deadline - time.monotonic() - 0.05, 0)))
                pause = min(pause * 2, 1.0)

    async def _attempt(self, index: int, path: str, body: dict, timeout: float) -> dict:
        url = self.endpoints[index] + path
        async with asyncio.timeout(max(timeout, 0.01)):
            async with self._http().post(url, json=body) as response:
                text = await response.text()
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            raise EtcdError(f"etcd {path}: HTTP {response.status}: {text[:200]}") from None
        if "result" in data and isinstance(data["result"], dict):
            data = data["result"]  # a streaming endpoint's one answer (lease keepalive)
        error = data.get("error")
        if error is not None:
            if isinstance(error, dict):  # a stream's error: {"error": {"grpc_code", "message"}}
                code, message = int(error.get("grpc_code", 0)), str(error.get("message", ""))
            else:
                code, message = int(data.get("code", 0)), str(data.get("message") or error)
            if code in _ROTATE_CODES:
                raise _Retry(f"code {code}: {message}")
            if code == OUT_OF_RANGE and "compacted" in message:
                raise Compacted(0, message)
            raise EtcdError(f"etcd {path}: {message}", code)
        if response.status >= 400:
            raise EtcdError(f"etcd {path}: HTTP {response.status}: {text[:200]}")
        if self._current != index:
            self._current = index
        return data

    # -- keys
    async def get(self, key: str) -> KV | None:
        data = await self._post("/v3/kv/range", {"key": _b64(key)})
        kvs = data.get("kvs", [])
        return _kv(kvs[0]) if kvs else None

    async def range(self, prefix: str, *, revision: int | None = None,
                    limit: int = 1000) -> tuple[int, list[KV]]:
        """Every key under `prefix` at one revision (the current one unless given), in pages
        of `limit`: (that revision, the keys in order). Raises Compacted for an old one."""
        end = _b64(prefix_end(prefix))
        start = _b64(prefix)
        found: list[KV] = []
        while True:
            body: dict[str, Any] = {"key": start, "range_end": end, "limit": str(limit)}
            if revision is not None:
                body["revision"] = str(revision)
            data = await self._post("/v3/kv/range", body)
            if revision is None:
                revision = int(data["header"]["revision"])
            page = [_kv(kv) for kv in data.get("kvs", [])]
            found += page
            if not data.get("more") or not page:
                return revision, found
            start = _b64(page[-1].key.encode(errors="surrogateescape") + b"\0")

    async def put(self, key: str, value: bytes | str, *, lease: int | None = None) -> int:
        """The revision the put made."""
        data = await self._post("/v3/kv/put", put_op(key, value, lease=lease)["request_put"])
        return int(data["header"]["revision"])

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        """How many keys were deleted."""
        data = await self._post("/v3/kv/deleterange",
                                delete_op(key, prefix=prefix)["request_delete_range"])
        return int(data.get("deleted", 0))

    async def txn(self, compare: Sequence[dict], success: Sequence[dict],
                  failure: Sequence[dict] = ()) -> tuple[bool, list[dict]]:
        """(whether the comparisons held, the responses of the branch that ran). Built with
        compare(), put_op(), delete_op(), range_op(). A retry after a lost answer may find
        its own first attempt's result: compare what is stored, as create() does."""
        data = await self._post("/v3/kv/txn", {"compare": list(compare),
                                               "success": list(success),
                                               "failure": list(failure)})
        return bool(data.get("succeeded", False)), list(data.get("responses", []))

    async def create(self, key: str, value: bytes | str, *, lease: int | None = None) -> bool:
        """Put `key` only if it does not exist: True if this call made it. A retried request
        whose first attempt won finds its own value: that is a win too, so make the value
        name its owner."""
        raw = value.encode() if isinstance(value, str) else value
        won, responses = await self.txn([compare(key, "create", "=", 0)],
                                         [put_op(key, raw, lease=lease)], [range_op(key)])
        if won:
            return True
        stored = kvs_of(responses[0]) if responses else []
        return bool(stored) and stored[0].value == raw

    # -- leases
    async def grant(self, ttl: int) -> int:
        data = await self._post("/v3/lease/grant", {"TTL": str(ttl)})
        return int(data["ID"])

    async def revoke(self, lease: int) -> None:
        try:
            await self._post("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdError as error:
            if error.code != NOT_FOUND:
                raise

    async def keepalive(self, lease: int) -> int:
        """The lease's TTL after one keepalive; 0 when etcd no longer has it."""
        data = await self._post("/v3/lease/keepalive", {"ID": str(lease)})
        return int(data.get("TTL", 0))

    def keep(self, ttl: int, *, revoke: bool = True) -> Lease:
        """`async with client.keep(10) as lease:` a granted lease kept alive until the block
        ends (then revoked, unless `revoke` is false: its keys then last one more TTL);
        `lease.lost` is set once it can no longer be relied on."""
        return Lease(self, ttl, revoke=revoke)

    # -- watches
    async def health(self, endpoint: str | None = None) -> bool:
        """Whether a member (the one in use by default) has a leader and answers in time."""
        url = (endpoint or self.endpoint) + "/health"
        try:
            async with asyncio.timeout(self.timeout):
                async with self._http().get(url) as response:
                    data = json.loads(await response.text())
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return False
        return data.get("health") in ("true", True)

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncGenerator[Event, None]:
        """Every change under `prefix` from `start_revision` on, in order and once each,
        across reconnects and failovers. Raises Compacted when etcd no longer has
        `start_revision` (or the revision a reconnect resumes from)."""
        next_revision = start_revision
        pause = 0.2
        while True:
            index = self._current
            try:
                async for batch in self._watch_stream(index, prefix, next_revision):
                    pause = 0.2  # a stream that answered: the next failure starts afresh
                    # A member catching up may send what came before the revision asked for:
                    # delivered already, or before the caller's list.
                    batch = [event for event in batch if event.revision >= next_revision]
                    for event in batch:
                        yield event
                    if batch:  # delivered whole: resume after its last event
                        next_revision = batch[-1].revision + 1
            except (aiohttp.ClientError, TimeoutError, OSError, _Retry, ValueError) as error:
                log.info("etcd.watch_reconnecting", endpoint=self.endpoints[index],
                         error=_describe(error), revision=next_revision)
                self._rotate(index)
                if self._current == 0 or len(self.endpoints) == 1:
                    await asyncio.sleep(pause)  # every member failed: back off, up to 2 s
                    pause = min(pause * 2, 2.0)

    async def _watch_stream(self, index: int, prefix: str,
                            start_revision: int) -> AsyncGenerator[list[Event], None]:
        """One watch on one endpoint: each response's events; raises _Retry (or a connection
        error) when it must be resumed elsewhere."""
        body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                   "start_revision": str(start_revision)}}
        url = self.endpoints[index] + "/v3/watch"
        async with asyncio.timeout(self.timeout):
            response = await self._http().post(url, json=body, headers=NO_LEADER)
        async with response:
            if response.status >= 400:  # refused before any stream began
                async with asyncio.timeout(self.timeout):
                    text = await response.text()
                _refusal(f"watch {prefix}", response.status, text)
            buffer = b""
            while True:
                try:
                    async with asyncio.timeout(self.timeout):
                        chunk = await response.content.readany()
                except TimeoutError:
                    # Quiet is normal for a watch, and also what a stopped member looks like.
                    if not await self.health(self.endpoints[index]):
                        raise _Retry("member unhealthy") from None
                    continue
                if not chunk:
                    raise _Retry("stream ended")
                buffer += chunk
                if len(buffer) > MAX_LINE:
                    raise _Retry("watch response too large")
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _watch_events(json.loads(line))
                if self._current != index:
                    self._current = index


def _refusal(what: str, status: int, text: str) -> None:
    """Raise for an error answer: _Retry when another member may serve it, else EtcdError."""
    try:
        data = json.loads(text)
    except ValueError:
        data = {}
    code = int(data.get("code", 0)) if isinstance(data, dict) else 0
    message = str(data.get("message") or data.get("error") or text[:200]) \
        if isinstance(data, dict) else text[:200]
    if code in _ROTATE_CODES or status == 503:
        raise _Retry(f"code {code}: {message}")
    raise EtcdError(f"etcd {what}: {message}", code)


def _watch_events(data: dict) -> list[Event]:
    error = data.get("error")
    if error is not None:
        raise _Retry(f"stream error: {error}")
    result = data.get("result", {})
    if result.get("canceled"):
        compact = int(result.get("compact_revision", 0))
        if compact:
            raise Compacted(compact)
        raise _Retry(f"watch canceled: {result.get('cancel_reason', '')}")
    events: list[Event] = []
    for event in result.get("events", []):
        kv = _kv(event["kv"])
        kind: Literal["put", "delete"] = "delete" if event.get("type") == "DELETE" else "put"
        events.append(Event(kind, kv, kv.mod_revision))
    return events


class _Retry(Exception):
    """This endpoint cannot serve the request now: try the next one."""


def _describe(error: BaseException) -> str:
    if isinstance(error, (TimeoutError)):
        return "timed out"
    return f"{type(error).__name__}: {error}"


class Lease:
    """A lease kept alive every TTL/3, across endpoint failures, until the block ends.

    `lost` is set once a TTL passed without a successful keepalive, or etcd says the lease
    is gone: what was put under it may have been deleted, so stop acting as its owner."""

    def __init__(self, client: Client, ttl: int, *, revoke: bool = True) -> None:
        self.client, self.ttl, self.revoke = client, ttl, revoke
        self.id = 0
        self.lost = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Self:
        asked = time.monotonic()
        self.id = await self.client.grant(self.ttl)
        self._task = asyncio.ensure_future(self._keep(asked))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.revoke and not self.lost.is_set():
            with contextlib.suppress(EtcdError):
                await self.client.revoke(self.id)

    async def _keep(self, last_sent: float) -> None:
        # etcd counts a TTL from when it took the keepalive, at or after we sent it: a TTL
        # from the sending of the last one that succeeded is when the lease may be gone.
        pause = self.ttl / 3
        while True:
            await asyncio.sleep(pause)
            sent = time.monotonic()
            try:
                async with asyncio.timeout(max(last_sent + self.ttl - sent, 0.01)):
                    ttl = await self.client.keepalive(self.id)
            except (EtcdError, TimeoutError) as error:
                if time.monotonic() - last_sent >= self.ttl:
                    log.warning("etcd.lease_lost", lease=self.id, error=_describe(error))
                    self.lost.set()
                    return
                log.info("etcd.keepalive_failed", lease=self.id, error=_describe(error))
                pause = min(0.5, self.ttl / 10)  # try the next member soon, not a third later
                continue
            if ttl <= 0:
                log.warning("etcd.lease_lost", lease=self.id, error="etcd no longer has it")
                self.lost.set()
                return
            last_sent, pause = sent, self.ttl / 3
