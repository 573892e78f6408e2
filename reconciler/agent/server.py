"""The agent's HTTP API (aiohttp) and serving it on a root-only unix socket.

    GET    /v1/version               {version, api, pid, root, run_dir, reconciling}
    GET    /v1/projects              [{name, status, reason, config_files, working_dir,
                                       generation, applied_generation, updated_at}]
    GET    /v1/projects/{name}       the same + "stack" + "steps" (resource -> its last step
                                     event: why it is not running); 404 {"error"} if unknown
    PUT    /v1/projects/{name}       {stack, config_files?, working_dir?, options?, hashes?}
                                     -> the project; 400 {"error": "<where>: <what>"}
    DELETE /v1/projects/{name}?volumes=true   202 {status: "removing"} (200 "removed"
                                     when no runtime reconciles); 404 if unknown
    GET    /v1/events?project=x      JSON lines: {type, project, status, resource, action,
                                     message, time}, until the client or the agent goes
    GET    /metrics                  Prometheus text
    POST   /v1/up, /v1/down          load, store and follow a stack (converge.py)

Every error is JSON, {"error": "<what>"}: 400 for a body that is not JSON, nested deeper than
MAX_DEPTH or not what the route takes; 413 for a body over MAX_BODY bytes, or a stack over
MAX_STACK bytes once normalized (what a submission may store).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from reconciler.agent import api, events, metrics, store

if TYPE_CHECKING:  # converge serves the routes of this server: it imports this module
    from reconciler.agent import converge

log = structlog.get_logger(__name__)

MAX_BODY = 4 * 1024 * 1024  # bytes of a request body, as sent (aiohttp's client_max_size)
MAX_STACK = 4 * 1024 * 1024  # bytes of the normalized stack a project keeps in the store
MAX_DEPTH = 100  # levels of a JSON body: the loader refuses deeper files as well


@dataclass
class Agent:
    """What the routes share. `on_change(project)` queues a reconcile when one is wired."""

    store: store.Store
    bus: events.EventBus
    metrics: metrics.Metrics
    root: Path
    run_dir: Path
    on_change: Callable[[str], None] | None = None
    ops: converge.ContainerOps | None = None  # when a runtime is plugged in
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # project -> resource -> the last step event: why a container is not running, for `ps`.
    last_steps: dict[str, dict[str, events.Event]] = field(default_factory=dict)

    def record_step(self, event: events.Event) -> None:
        self.last_steps.setdefault(event.project, {})[event.resource] = event

    @property
    def reconciling(self) -> bool:
        return self.on_change is not None


AGENT = web.AppKey("agent", Agent)
routes = web.RouteTableDef()


def _info(record: store.ProjectRecord) -> api.ProjectInfo:
    return api.ProjectInfo(record.name, record.status, record.config_files, record.working_dir,
                           record.generation, record.applied_generation, record.updated_at,
                           record.reason)


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}),
                              content_type="application/json")


@routes.get("/v1/version")
async def get_version(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    info = api.VersionInfo(_version(), api.API_VERSION, os.getpid(), str(agent.root),
                           str(agent.run_dir), agent.reconciling)
    return web.json_response(info.to_json())


@routes.get("/v1/projects")
async def list_projects(request: web.Request) -> web.Response:
    records = request.app[AGENT].store.list()
    return web.json_response([_info(r).to_json() for r in records])


@routes.get("/v1/projects/{name}")
async def get_project(request: web.Request) -> web.Response:
    record = request.app[AGENT].store.get(request.match_info["name"])
    if record is None:
        raise web.HTTPNotFound(text=json.dumps({"error": "no such project"}),
                               content_type="application/json")
    steps = request.app[AGENT].last_steps.get(record.name, {})
    return web.json_response(_info(record).to_json() | {
        "stack": json.loads(record.stack),
        "steps": {resource: dataclasses.asdict(e) for resource, e in sorted(steps.items())}})


@routes.put("/v1/projects/{name}")
async def put_project(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    record = record_from_body(request.match_info["name"], await json_body(request))
    return web.json_response(_info(accept(agent, record)).to_json())


def accept(agent: Agent, record: store.ProjectRecord) -> store.ProjectRecord:
    """Store a checked submission and wake its reconcile."""
    record = dataclasses.replace(record, options=dataclasses.replace(
        record.options, submitted_at=time.time()))
    stored = agent.store.put(record)
    agent.bus.publish(events.Event("project", stored.name, "submitted",
                                   message=f"generation {stored.generation}"))
    if agent.on_change:
        agent.on_change(stored.name)
    log.info("project.submitted", project=stored.name, generation=stored.generation)
    return stored


@routes.delete("/v1/projects/{name}")
async def delete_project(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    name = request.match_info["name"]
    volumes = request.query.get("volumes", "false").lower() in ("1", "true", "yes")
    if agent.store.get(name) is None:
        raise web.HTTPNotFound(text=json.dumps({"error": f"no such project: {name}"}),
                               content_type="application/json")
    removing = remove(agent, name, volumes)
    if removing is None:
        return web.json_response({"name": name, "status": "removed"}, status=200)
    return web.json_response(_info(removing).to_json(), status=202)


def remove(agent: Agent, name: str, volumes: bool) -> store.ProjectRecord | None:
    """Ask for a known project's removal: the record being removed, whose row stays until
    the reconciler has taken everything down; None when no runtime reconciles (the row is
    simply deleted)."""
    if agent.on_change:
        removing = agent.store.mark_removing(name, remove_volumes=volumes)
        if removing is not None:
            agent.on_change(name)
    else:
        agent.store.delete(name)
        removing = None
    status = removing.status if removing else "removed"
    agent.bus.publish(events.Event("project", name, status))
    log.info("project.removal_requested", project=name, volumes=volumes)
    return removing


@routes.get("/v1/events")
async def stream_events(request: web.Request) -> web.StreamResponse:
    """JSON lines, one event each, until the client goes or the agent stops."""
    agent = request.app[AGENT]
    project = request.query.get("project")
    queue = agent.bus.subscribe()
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    try:
        await response.prepare(request)
        stopping = asyncio.ensure_future(agent.stopping.wait())
        while not agent.stopping.is_set():
            getting = asyncio.ensure_future(queue.get())
            await asyncio.wait([getting, stopping], return_when=asyncio.FIRST_COMPLETED)
            if not getting.done():
                getting.cancel()
                break
            event = getting.result()
            if project is None or event.project == project:
                try:
                    await response.write(event.to_json().encode() + b"\n")
                except (ConnectionResetError, ConnectionError):
                    break  # the follower went away (the CLI returned or was stopped)
        stopping.cancel()
    finally:
        agent.bus.unsubscribe(queue)
    return response


@routes.get("/metrics")
async def get_metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[AGENT].metrics.render(),
                        headers={"Content-Type": metrics.CONTENT_TYPE,
                                 "X-Content-Type-Options": "nosniff"})


@web.middleware
async def count_requests(request: web.Request, handler):
    route = request.match_info.route.resource
    path = route.canonical if route else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    finally:
        request.app[AGENT].metrics.inc("pcompose_api_requests_total", method=request.method,
                                       route=path, code=str(status))


@web.middleware
async def errors_as_json(request: web.Request, handler):
    """Every refusal as {"error": ...}, which the CLI prints; a body nested too deep for the
    code that walks it is the client's error (400), not the agent's (500)."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.content_type == "application/json":
            raise
        if isinstance(error, web.HTTPRequestEntityTooLarge):  # aiohttp's, from reading
            raise too_large(f"request body: more than {MAX_BODY} bytes, the most the agent "
                            "takes") from None
        if error.status >= 400:
            error.text = json.dumps({"error": (error.text or error.reason).strip()})
            error.content_type = "application/json"
        raise
    except RecursionError:
        raise bad_request(f"request body: nested deeper than {MAX_DEPTH} levels") from None


async def json_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except RecursionError:
        raise bad_request(f"request body: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:  # not JSON, not UTF-8, a number too long to read
        raise bad_request(f"request body: invalid JSON: {error}") from None
    if not isinstance(body, dict):
        raise bad_request("request body: expected a JSON object")
    if _depth(body) > MAX_DEPTH:
        raise bad_request(f"request body: nested deeper than {MAX_DEPTH} levels")
    return body


def _depth(value: object) -> int:
    """How deep a parsed JSON value nests, without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:  # deeper is refused anyway: no need to walk it all
                todo.extend((v, level + 1) for v in (item.values() if isinstance(item, dict)
                                                     else item))
    return deepest


def too_large(message: str) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(MAX_BODY, text=json.dumps({"error": message}),
                                         content_type="application/json")


def check_name(name: str) -> None:
    api.check_project_name(name)


def record_from_body(name: str, body: dict) -> store.ProjectRecord:
    """Check everything before anything is stored: a bad request changes nothing."""
    try:
        check_name(name)
        unknown = sorted(set(body) - {"stack", "config_files", "working_dir", "options",
                                      "hashes"})
        if unknown:
            raise ValueError(f"request body: unknown key(s) {', '.join(unknown)}")
        stack = body.get("stack")
        if not isinstance(stack, dict):
            raise ValueError("stack: expected the normalized stack as a JSON object")
        files = body.get("config_files", [])
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise ValueError("config_files: expected a list of paths")
        working_dir = body.get("working_dir", "")
        if not isinstance(working_dir, str):
            raise ValueError("working_dir: expected a path")
        options = body.get("options", {"start_stopped": True})
        if not isinstance(options, dict):
            raise ValueError("options: expected a JSON object")
        diff_options = store.options_from_json(options)
        hashes = body.get("hashes", {})
        if not isinstance(hashes, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in hashes.items()):
            raise ValueError("hashes: expected a mapping of service name to config hash")
    except ValueError as error:
        raise bad_request(str(error)) from None
    canonical = json.dumps(stack, sort_keys=True, separators=(",", ":"))
    if len(canonical) > MAX_STACK:
        raise too_large(f"stack: {len(canonical)} bytes once normalized, more than the "
                        f"{MAX_STACK} a project may keep")
    return store.ProjectRecord(name, canonical, tuple(files), working_dir, diff_options,
                               hashes=tuple(sorted(hashes.items())))


def _version() -> str:
    try:
        return metadata.version("pcompose")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def make_app(agent: Agent) -> web.Application:
    app = web.Application(middlewares=[count_requests, errors_as_json],
                          client_max_size=MAX_BODY)
    app[AGENT] = agent
    agent.metrics.counter("pcompose_api_requests_total", "API requests by route and code",
                          ("code", "method", "route"))
    agent.metrics.gauge("pcompose_projects", "Projects in the desired-state store",
                        lambda: len(agent.store.list()))
    agent.metrics.gauge("pcompose_event_subscribers", "Open event streams",
                        lambda: agent.bus.subscribers)
    agent.metrics.gauge("pcompose_events_published_total", "Events published since start",
                        lambda: agent.bus.published, kind="counter")
    app.add_routes(routes)
    from reconciler.agent import converge  # it builds on this module's helpers

    app.add_routes(converge.routes)
    from reconciler.agent import builds  # the build route, beside the stack verbs'

    app.add_routes(builds.routes)

    async def stop_streams(app: web.Application) -> None:
        app[AGENT].stopping.set()

    app.on_shutdown.append(stop_streams)
    return app


def bind_unix(path: Path) -> socket.socket:
    """A listening socket only root can connect to: made 0600 before it accepts anything."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return sock


async def serve(app: web.Application, path: Path) -> web.AppRunner:
    """Start serving `app` on the unix socket `path`; the caller cleans up the runner."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.SockSite(runner, bind_unix(path))
    await site.start()
    log.info("socket.opened", socket=str(path))
    return runner
