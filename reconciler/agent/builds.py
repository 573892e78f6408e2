"""The agent's build route: the stack's `build:` services built here, their progress streamed to the CLI.

    POST /v1/build {load, services?, no_cache?, pull?, build_args?: ["K=V"], only_missing?}
        -> JSON lines: {type: "accepted", project, services}, {type: "progress", line}...,
           {type: "result", ok, error, images: [{service, image, id, error}]}

`pcompose build` asks for what it names; `up` first asks with only_missing (what has no image
yet), or without it for `up --build`, then submits the stack: a rebuilt image has a new id, and
the desired state carries image ids, so the containers made from the old one are recreated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web

from controllers import builds, context
from reconciler import spec
from reconciler.agent import server, submit
from runtime import images

routes = web.RouteTableDef()

_KEYS = {"load", "services", "no_cache", "pull", "build_args", "only_missing"}


def _options(body: dict) -> builds.Options:
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise ValueError(f"request body: unknown key(s) {', '.join(unknown)}")
    flags = {}
    for key in ("no_cache", "pull", "only_missing"):
        if not isinstance(body.get(key, False), bool):
            raise ValueError(f"{key}: expected true or false")
        flags[key] = body.get(key, False)
    services = body.get("services") or []
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        raise ValueError("services: expected a list of names")
    pairs = []
    for item in body.get("build_args") or []:
        if not isinstance(item, str):
            raise ValueError("build_args: expected a list of KEY=VALUE")
        key, sep, value = item.partition("=")
        if not key:
            raise ValueError(f"build_args: {item!r}: expected KEY=VALUE")
        pairs.append((key, value if sep else ""))
    return builds.Options(services=tuple(services), build_args=tuple(pairs), **flags)


def _context(agent: server.Agent) -> context.Context:
    ctx = getattr(agent.ops, "ctx", None)
    return ctx if isinstance(ctx, context.Context) else context.make(agent.root, agent.run_dir)


@routes.post("/v1/build")
async def build(request: web.Request) -> web.StreamResponse:
    agent = request.app[server.AGENT]
    body = await server.json_body(request)
    try:
        options = _options(body)
        load = submit.LoadRequest.from_json(body.get("load"))
    except ValueError as error:
        raise server.bad_request(str(error)) from None
    try:
        project = await asyncio.to_thread(submit.load, load)
    except spec.SpecError as error:
        raise server.bad_request(str(error)) from None
    missing = [s for s in options.services if s not in project.stack.services]
    if missing:
        raise server.bad_request(f"no such service: {missing[0]}")
    ctx = _context(agent)
    names = await asyncio.to_thread(builds.wanted, ctx, project.name, project.stack,
                                    tuple(project.services_enabled), options)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    async def send(doc: dict) -> None:
        # the CLI may have gone away: the build goes on, its image lands all the same
        with contextlib.suppress(ConnectionResetError, ConnectionError):
            await response.write(json.dumps(doc, separators=(",", ":")).encode() + b"\n")

    def emit(line: str) -> None:  # from the builder's threads
        loop.call_soon_threadsafe(lines.put_nowait, line)

    def pull(ref: str) -> None:
        asyncio.run_coroutine_threadsafe(images.pull(ctx.images, ref), loop).result()

    await send({"type": "accepted", "project": project.name, "services": names})
    job = asyncio.ensure_future(builds.build(ctx, project.name, project.stack, names, options,
                                             project.working_dir, emit, pull))
    job.add_done_callback(lambda _: lines.put_nowait(None))
    while (line := await lines.get()) is not None:
        await send({"type": "progress", "line": line})
    while not lines.empty():
        if (line := lines.get_nowait()) is not None:
            await send({"type": "progress", "line": line})
    done = job.result()
    failed = [b for b in done if b.error]
    await send({"type": "result", "ok": not failed,
                "error": "; ".join(f"{b.service}: {b.error}" for b in failed) or None,
                "images": [{"service": b.service, "image": b.image, "id": b.image_id, "error": b.error}
                           for b in done]})
    return response
