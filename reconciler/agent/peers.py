"""The agent's API over TCP (mutual TLS, or a shared token) and what reaches other nodes through
it: `ps` of every node, and `logs` and `exec` proxied to the node that runs the container.

    POST /v1/logs  {project, services?, index?, tail?, follow?, local?}  JSON lines
                   {name, node, time, stream, text}: of every node unless `local`
    POST /v1/exec  {project, service, index?, command, user?, env?, workdir?, local?}
                   JSON lines {stream, data (base64)}, then {exit}; run on the node that
                   runs the replica (this one, or a peer the request is passed on to)

Requests over the unix socket are root's (its mode says so); over TCP a client shows a cert
of the cluster's CA or, when the agent was given one, the token (`Authorization: Bearer`).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hmac
import json
import os
import pwd
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from reconciler.agent import ops, server
from reconciler.cluster import keys, membership, tls

log = structlog.get_logger(__name__)

DEADLINE = 3.0  # seconds a peer has to answer a fan-out before it is reported unreachable


@dataclass(frozen=True)
class Listen:
    """`agent --listen-tcp HOST:PORT` and how it is secured."""

    host: str
    port: int
    files: tls.Files | None = None  # the cluster CA, this agent's cert and key
    token: str | None = None  # the shared secret itself
    insecure: bool = False  # --insecure-tcp: in clear, which only an explicit flag allows

    @property
    def scheme(self) -> str:
        return "http" if self.files is None else "https"

    def url(self, advertise: str) -> str:
        host = self.host if self.host not in ("0.0.0.0", "::", "") else advertise
        return f"{self.scheme}://{host}:{self.port}"

    def server_context(self) -> ssl.SSLContext | None:
        if self.files is None:
            return None
        return tls.server_context(self.files, require_cert=self.token is None)

    def client_context(self) -> ssl.SSLContext | None:
        if self.files is None:
            return None
        return tls.client_context(self.files.ca, self.files.cert, self.files.key)


class Peers:
    """This node's view of the others: their API addresses, from their status in etcd."""

    def __init__(self, listen: Listen, member: membership.Membership) -> None:
        self.listen, self.member = listen, member
        self.ssl = listen.client_context()
        self.headers = {"Authorization": f"Bearer {listen.token}"} if listen.token else {}

    @property
    def name(self) -> str:
        return self.member.config.name

    async def others(self) -> list[tuple[str, str]]:
        """(hostname, API URL) of every other Ready node that serves its API over TCP."""
        _, kvs = await self.member.client.range(keys.NODES)
        found = []
        for kv in kvs:
            parsed = keys.parse_node_key(kv.key)
            if parsed is None or parsed[1] != "status" or parsed[0] == self.member.id:
                continue
            try:
                status = kv.json()
            except ValueError:
                continue
            if isinstance(status, dict) and status.get("api"):
                found.append((str(status.get("hostname", parsed[0])), str(status["api"])))
        return sorted(found)

    def session(self, total: float | None = DEADLINE) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl if self.ssl is not None else False),
            headers=self.headers,
            timeout=aiohttp.ClientTimeout(total=total, sock_connect=DEADLINE))


PEERS = web.AppKey("peers", Peers)


@web.middleware
async def authenticate(request: web.Request, handler):
    """Over TCP: a verified client cert (checked in the handshake), else the token."""
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    if not isinstance(peer, tuple):  # the unix socket: root's only, by its mode
        return await handler(request)
    peers = request.app[PEERS]
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is not None and ssl_object.getpeercert():
        return await handler(request)
    token = peers.listen.token
    given = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return await handler(request)
    if peers.listen.insecure and not token:
        return await handler(request)
    log.warning("api.refused", peer=str(peer[0]), path=request.path)
    raise web.HTTPUnauthorized(text=json.dumps({"error": "a client certificate of the "
                                                "cluster's CA or the token is required"}),
                               content_type="application/json")


def install(app: web.Application, listen: Listen, member: membership.Membership) -> None:
    """Before the app starts: the TCP side's check and the cross-node routes."""
    app[PEERS] = Peers(listen, member)
    app.middlewares.insert(0, authenticate)
    app.add_routes(routes)


async def serve(runner: web.AppRunner, listen: Listen) -> None:
    """Serve the app on HOST:PORT too (after `install`); in clear only with `insecure`."""
    context = listen.server_context()
    if context is None and not listen.insecure:
        raise tls.TLSError("the TCP API needs --tls-ca/--tls-cert/--tls-key, or "
                           "--insecure-tcp to serve in clear")
    site = web.TCPSite(runner, listen.host, listen.port, ssl_context=context)
    await site.start()
    log.info("tcp.opened", address=f"{listen.host}:{listen.port}", scheme=listen.scheme,
             token=listen.token is not None)


def peers_of(request: web.Request) -> Peers | None:
    return request.app.get(PEERS)


# -- ps of every node
async def gather_ps(request: web.Request, project: str, rows: list[dict]
                    ) -> tuple[list[dict], list[str]]:
    """This node's rows and every peer's, each with its node; the nodes that did not answer
    within the deadline are named rather than waited for."""
    peers = peers_of(request)
    if peers is None:
        return rows, []
    mine = [row | {"node": peers.name} for row in rows]
    others = await peers.others()

    async def ask(session: aiohttp.ClientSession, node: str, url: str) -> list[dict]:
        async with session.post(f"{url}/v1/ps", json={"project": project, "local": True}
                                ) as response:
            if response.status != 200:
                raise aiohttp.ClientError(f"HTTP {response.status}")
            body = await response.json()
        return [row | {"node": node} for row in body["containers"]]

    unreachable = []
    async with peers.session() as session:
        answers = await asyncio.gather(*(ask(session, n, u) for n, u in others),
                                       return_exceptions=True)
    for (node, _), answer in zip(others, answers, strict=True):
        if isinstance(answer, BaseException):
            log.warning("peer.unreachable", node=node, error=str(answer) or type(answer).__name__)
            unreachable.append(node)
        else:
            mine += answer
    return mine, unreachable


# -- logs
routes = web.RouteTableDef()


def _agent_ops(request: web.Request) -> ops.Ops:
    found = request.app[server.AGENT].ops
    if not isinstance(found, ops.Ops):
        raise web.HTTPServiceUnavailable(text=json.dumps({"error": "this agent runs no "
                                                          "containers"}),
                                         content_type="application/json")
    return found


def _int(body: dict, key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise server.bad_request(f"{key}: expected an integer")
    return value


def _project(body: dict) -> str:
    project = body.get("project")
    if not isinstance(project, str):
        raise server.bad_request("project: expected a project name")
    try:
        server.check_name(project)
    except ValueError as error:
        raise server.bad_request(str(error)) from None
    return project


async def _local_logs(request: web.Request, body: dict) -> AsyncIterator[dict]:
    from runtime.oci import logs as oci_logs

    the_ops = _agent_ops(request)
    project = _project(body)
    services = body.get("services") or []
    index, tail = _int(body, "index"), _int(body, "tail")
    peers = peers_of(request)
    node = peers.name if peers else ""
    views = [v for v in await the_ops.views(project)
             if (not services or v.service in services) and (index is None or
                                                              v.replica == index)]
    layout = the_ops.ctx.layout

    def row(name: str, line: Any) -> dict:
        return {"name": name, "node": node, "time": line.time.isoformat(),
                "stream": line.stream, "text": line.text}

    if not body.get("follow"):
        merged = []
        for view in views:
            lines = await asyncio.to_thread(oci_logs.read, layout.log_path(view.id), tail)
            merged += [(line.time, view.name, line) for line in lines]
        for _, name, line in sorted(merged, key=lambda item: (item[0], item[1])):
            yield row(name, line)
        return
    queue: asyncio.Queue[dict | None] = asyncio.Queue()
    running = {v.name for v in views if v.state in ("running", "paused", "created")}

    async def follow(view) -> None:
        async for line in oci_logs.follow(layout.log_path(view.id),
                                          done=lambda: view.name not in running, tail=tail):
            await queue.put(row(view.name, line))

    async def watch() -> None:
        # A container that stops ends its follow; all stopped: the stream ends.
        while running:
            await asyncio.sleep(0.3)
            now = {v.name: v.state for v in await the_ops.views(project)}
            running.intersection_update(n for n, s in now.items()
                                        if s in ("running", "paused", "created"))

    tasks = [asyncio.ensure_future(follow(v)) for v in views]
    watcher = asyncio.ensure_future(watch())
    done = asyncio.ensure_future(_all(tasks, queue))
    try:
        while (item := await queue.get()) is not None:
            yield item
    finally:
        for task in (*tasks, watcher, done):
            task.cancel()
        await asyncio.gather(*tasks, watcher, done, return_exceptions=True)


async def _all(tasks: list[asyncio.Task], queue: asyncio.Queue) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)
    await queue.put(None)


async def _relay(session: aiohttp.ClientSession, url: str, path: str, body: dict,
                 queue: asyncio.Queue) -> None:
    async with session.post(f"{url}{path}", json=body) as response:
        if response.status != 200:
            raise aiohttp.ClientError(f"HTTP {response.status}: {await response.text()}")
        async for line in response.content:
            if line.strip():
                await queue.put(json.loads(line))


@routes.post("/v1/logs")
async def logs(request: web.Request) -> web.StreamResponse:
    body = await server.json_body(request)
    peers = peers_of(request)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    if body.get("local") or peers is None:
        async for item in _local_logs(request, body):
            await response.write(json.dumps(item).encode() + b"\n")
        return response
    queue: asyncio.Queue[dict | None] = asyncio.Queue()
    others = await peers.others()

    async def mine() -> None:
        async for item in _local_logs(request, body):
            await queue.put(item)

    async def theirs(session: aiohttp.ClientSession, node: str, url: str) -> None:
        try:
            await _relay(session, url, "/v1/logs", body | {"local": True}, queue)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            await queue.put({"node": node, "unreachable": str(error) or type(error).__name__})

    following = bool(body.get("follow"))
    async with peers.session(None if following else 30.0) as session:
        tasks = [asyncio.ensure_future(mine())] + [
            asyncio.ensure_future(theirs(session, n, u)) for n, u in others]
        ender = asyncio.ensure_future(_all(tasks, queue))
        items: list[dict] = []
        try:
            while (got := await queue.get()) is not None:
                if following:
                    await response.write(json.dumps(got).encode() + b"\n")
                else:
                    items.append(got)
            # Not following: every node's lines merged in time order, as one host's are.
            for item in sorted(items, key=lambda i: (i.get("time", ""), i.get("name", ""))):
                await response.write(json.dumps(item).encode() + b"\n")
        finally:
            for task in (*tasks, ender):
                task.cancel()
            await asyncio.gather(*tasks, ender, return_exceptions=True)
    return response


# -- exec
async def _local_exec(request: web.Request, body: dict, view) -> AsyncIterator[dict]:
    from runtime.oci import exec as oci_exec

    the_ops = _agent_ops(request)
    command = body.get("command")
    env = body.get("env") or {}
    if not isinstance(command, list) or not command or not all(
            isinstance(w, str) for w in command):
        raise server.bad_request("command: expected a list of words")
    if not isinstance(env, dict):
        raise server.bad_request("env: expected a mapping")
    opts = oci_exec.ExecOptions(user=str(body.get("user") or ""), env=env,
                                workdir=str(body.get("workdir") or ""))
    try:
        argv = oci_exec.runc_args(the_ops.ctx.layout, view.id, command, opts, terminal=False)
    except LookupError as error:
        yield {"error": str(error)}
        return
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    queue: asyncio.Queue[dict | None] = asyncio.Queue()

    async def pump(stream: asyncio.StreamReader | None, name: str) -> None:
        assert stream is not None
        while chunk := await stream.read(65536):
            await queue.put({"stream": name, "data": base64.b64encode(chunk).decode()})

    pumps = [asyncio.ensure_future(pump(proc.stdout, "stdout")),
             asyncio.ensure_future(pump(proc.stderr, "stderr"))]
    ender = asyncio.ensure_future(_all(pumps, queue))
    try:
        while (item := await queue.get()) is not None:
            yield item
        yield {"exit": await proc.wait()}
    finally:
        ender.cancel()
        if proc.returncode is None:  # the client went away: the exec goes too
            proc.kill()
            await proc.wait()


def _wanted(view, body: dict) -> bool:
    return (view.service == body.get("service") and view.replica == (_int(body, "index") or 1)
            and view.state == "running")


@routes.post("/v1/exec")
async def exec_(request: web.Request) -> web.StreamResponse:
    body = await server.json_body(request)
    project = _project(body)
    peers = peers_of(request)
    view = next((v for v in await _agent_ops(request).views(project) if _wanted(v, body)),
                None)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    if view is not None:
        await response.prepare(request)
        async for item in _local_exec(request, body, view):
            await response.write(json.dumps(item).encode() + b"\n")
        return response
    if body.get("local") or peers is None:
        raise web.HTTPNotFound(text=json.dumps({"error": f'service "{body.get("service")}" '
                                                "is not running"}),
                               content_type="application/json")
    # Which node runs it: every peer's ps, in parallel; then the exec streams through here.
    node_url = await _runner_of(peers, project, body)
    if node_url is None:
        raise web.HTTPNotFound(text=json.dumps({"error": f'service "{body.get("service")}" '
                                                "is not running on any node"}),
                               content_type="application/json")
    await response.prepare(request)
    async with peers.session(None) as session, session.post(
            f"{node_url}/v1/exec", json=body | {"local": True}) as answer:
        if answer.status != 200:
            text = await answer.text()
            await response.write(json.dumps({"error": _error_of(text)}).encode() + b"\n")
            return response
        async for line in answer.content:
            await response.write(line)
    return response


def _error_of(text: str) -> str:
    try:
        return str(json.loads(text).get("error", text))
    except (ValueError, AttributeError):
        return text


async def _runner_of(peers: Peers, project: str, body: dict) -> str | None:
    others = await peers.others()

    async def ask(session: aiohttp.ClientSession, url: str) -> bool:
        async with session.post(f"{url}/v1/ps", json={"project": project, "local": True}
                                ) as response:
            rows = (await response.json())["containers"] if response.status == 200 else []
        return any(row["service"] == body.get("service") and row["state"] == "running"
                   and row["replica"] == (_int(body, "index") or 1) for row in rows)

    async with peers.session() as session:
        found = await asyncio.gather(*(ask(session, u) for _, u in others),
                                     return_exceptions=True)
    return next((url for (_, url), hit in zip(others, found, strict=True) if hit is True),
                None)


# -- lifecycle verbs
async def forward_act(request: web.Request, project: str, body: dict,
                      send: Callable[[dict], Awaitable[None]]) -> list[str]:
    """A lifecycle verb (POST /v1/act) on every peer's containers of the project too, their
    progress lines sent on as they come; the failures, a node that did not answer among them."""
    peers = peers_of(request)
    if peers is None:
        return []
    asked = {k: v for k, v in body.items() if k != "load"} | {"project": project, "local": True}
    failures: list[str] = []

    async def one(session: aiohttp.ClientSession, node: str, url: str) -> None:
        try:
            async with session.post(f"{url}/v1/act", json=asked) as response:
                if response.status != 200:
                    failures.append(f"node {node}: {_error_of(await response.text())}")
                    return
                async for line in response.content:
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    if item.get("type") == "progress":
                        await send(item)
                    elif item.get("type") == "result" and not item.get("ok"):
                        failures.append(str(item.get("error")))
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            failures.append(f"node {node} did not answer: {error or type(error).__name__}")

    others = await peers.others()
    async with peers.session(None) as session:
        await asyncio.gather(*(one(session, n, u) for n, u in others))
    return failures


# -- top
def process_row(pid: int) -> list[str] | None:
    """One line of `top` from /proc: what ps -ef shows (None for a process gone meanwhile)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None  # exited meanwhile
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) // ticks
    boot = time.time() - float(Path("/proc/uptime").read_text().split()[0])
    started = dt.datetime.fromtimestamp(boot + int(fields[19]) / ticks)
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    command = " ".join(a.decode(errors="replace") for a in cmdline.split(b"\0") if a)
    return [user, str(pid), fields[1], "0", f"{started:%H:%M}", "?",
            f"{cpu // 3600:02d}:{cpu // 60 % 60:02d}:{cpu % 60:02d}",
            command or stat[stat.index("(") + 1:stat.rindex(")")]]


async def _local_top(request: web.Request, body: dict) -> list[dict]:
    from runtime.oci import observe

    the_ops = _agent_ops(request)
    project = _project(body)
    services = body.get("services") or []
    peers = peers_of(request)
    found = []
    for view in await the_ops.views(project):
        if view.state not in ("running", "paused") or (services and view.service not in services):
            continue
        pids = await observe.top(the_ops.ctx.layout, view.id)
        rows = [r for r in map(process_row, sorted(pids)) if r]
        found.append({"name": view.name, "node": peers.name if peers else "", "processes": rows})
    return found


@routes.post("/v1/top")
async def top(request: web.Request) -> web.Response:
    """{containers: [{name, node, processes: [ps -ef's columns]}], unreachable: [node]}: of
    every node unless `local`."""
    body = await server.json_body(request)
    found = await _local_top(request, body)
    peers = peers_of(request)
    unreachable: list[str] = []
    if peers is not None and not body.get("local"):
        others = await peers.others()

        async def ask(session: aiohttp.ClientSession, url: str) -> list[dict]:
            async with session.post(f"{url}/v1/top", json=body | {"local": True}) as answer:
                if answer.status != 200:
                    raise aiohttp.ClientError(f"HTTP {answer.status}")
                return (await answer.json())["containers"]

        async with peers.session() as session:
            answers = await asyncio.gather(*(ask(session, u) for _, u in others),
                                           return_exceptions=True)
        for (node, _), answer in zip(others, answers, strict=True):
            if isinstance(answer, BaseException):
                unreachable.append(node)
            else:
                found += answer
    return web.json_response({"containers": sorted(found, key=lambda c: c["name"]),
                              "unreachable": unreachable})
