"""The agent's side of the stack verbs: load the user's stack, store what it wants, and stream
the steps as the loop runs them until the project converged (or was removed); list and act
on the project's containers for ps, ls and the lifecycle verbs.

    POST /v1/up    {load, options, wait?, timeout?}
    POST /v1/down  {project | load, volumes?, timeout?}
    POST /v1/ps    {project | load} -> {project, services, containers: [ps views]}
    GET  /v1/ls    [{name, states, config_files, status}]: every project, known or not
    POST /v1/act   {project | load, verb, services?, timeout?, signal?, remove_orphans?,
                   containers?, volumes?}: stop, start, restart, kill, pause, unpause, rm
                   (of `containers` if named; `volumes`: their anonymous volumes too);
                   lines {type: "progress", line} then result
    POST /v1/prune {containers: [ID]} -> {removed: [[ID, bytes freed]]}: `system prune`'s
                   stopped containers, which their projects stop wanting as `rm` does

Each answers 400 {"error": "<where>: <what>"} before anything is stored or done when the
request or the stack is wrong. up and down answer JSON lines: first {"type": "accepted",
project, ...}, then the step events of the project ({"type": "step", ...}, as GET /v1/events
has them; {"type": "pull", image, layer, status, current, total} for each layer's step of
an image the containers need pulled), and last {"type": "result", "ok": bool, "error"?,
...}: what the CLI prints, without the CLI loading the stack or polling.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import time
from typing import Protocol

from aiohttp import web

from reconciler import spec
from reconciler.agent import cluster_projects, ops, peers, server, store, submit
from reconciler.spec import graph, model as spec_model
from runtime import names as naming

routes = web.RouteTableDef()

DEFAULT_TIMEOUT = 600.0
HEALTH_POLL = 0.2


class ContainerOps(Protocol):
    """ops.Ops, or nothing when the agent runs without a runtime."""

    async def containers(self, project: str) -> list: ...  # ops.Brief: name, state, health
    async def converged(self, project: str) -> list: ...  # the same, maybe from the loop
    async def stop(self, ids: list[str], timeout: float | None) -> None: ...
    async def remove(self, ids: list[str]) -> None: ...
    async def views(self, project: str) -> list: ...  # what ps shows
    async def states(self) -> dict[str, list[str]]: ...
    async def act(self, verb: str, cid: str, state: str, *, timeout: float | None,
                  signal: str, volumes: bool = False) -> None: ...
    async def prune(self, ids: set[str], removing) -> list: ...  # [(ID, bytes freed)]
    def serial(self, project: str) -> contextlib.AbstractAsyncContextManager: ...


class _Stream:
    """A JSON-lines response; a client that went away ends the writing, not the request."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        self.gone = False

    async def open(self) -> None:
        await self.response.prepare(self.request)

    async def send(self, line: dict) -> None:
        if self.gone:
            return
        try:
            await self.response.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        except (ConnectionResetError, ConnectionError):
            self.gone = True


def _float(body: dict, key: str, default: float | None) -> float | None:
    value = body.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or value < 0):
        raise ValueError(f"{key}: expected a number of seconds")
    return value


# Loads run here, not on the default pool, which a large reconcile keeps busy: a `ps` or a
# verb naming its files waited behind the steps' work there.
_LOADER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="load")


async def _load(request: submit.LoadRequest) -> spec.Project:
    try:
        return await asyncio.get_running_loop().run_in_executor(_LOADER, submit.load, request)
    except spec.SpecError as error:
        raise server.bad_request(str(error)) from None


@routes.post("/v1/up")
async def up(request: web.Request) -> web.StreamResponse:
    agent = request.app[server.AGENT]
    body = await server.json_body(request)
    try:
        unknown = sorted(set(body) - {"load", "options", "wait", "timeout"})
        if unknown:
            raise ValueError(f"request body: unknown key(s) {', '.join(unknown)}")
        load = submit.LoadRequest.from_json(body.get("load"))
        options = submit.UpOptions.from_json(body.get("options", {}))
        wait = body.get("wait", False)
        if not isinstance(wait, bool):
            raise ValueError("wait: expected true or false")
        timeout = _float(body, "timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT
    except ValueError as wrong:
        raise server.bad_request(str(wrong)) from None
    project = await _load(load)
    before = agent.store.get(project.name)
    kept = before if before and before.status != store.REMOVING else None
    previous = dict(kept.hashes) if kept else None
    try:
        services = submit.wanted(project, options)
        submission = submit.submission(
            project, options, previous, dict(kept.options.scale) if kept else None,
            kept.options.removed if kept else ())
    except submit.Refused as refused:
        raise server.bad_request(str(refused)) from None
    try:  # in a cluster: a placement that can never hold fails now, not pending forever
        await cluster_projects.check(request.app, project.name, submission)
        # Published and placed first: this node then runs at once what is assigned to it.
        placed = await cluster_projects.publish(request.app, project.name, submission)
    except cluster_projects.Refused as refused:
        raise server.bad_request(str(refused)) from None
    record = server.record_from_body(
        project.name, await cluster_projects.local(request.app, project.name, submission))
    began, deadline = time.time(), time.monotonic() + timeout
    queue = agent.bus.subscribe()  # before storing: no step of this submission is missed
    try:
        stored = server.accept(agent, record)
        stream = _Stream(request)
        await stream.open()
        await stream.send({"type": "accepted", "project": stored.name,
                           "generation": stored.generation,
                           "warnings": [str(w) for w in project.warnings] + placed,
                           "services": services})
        error = await _follow(agent, queue, stream, stored.name, stored.generation, began,
                              deadline)
    finally:
        agent.bus.unsubscribe(queue)
    if error is None and wait:
        error = await _wait_healthy(agent, stored.name, services, deadline)
    views = await agent.ops.converged(stored.name) if agent.ops and error is None and not wait \
        else await _views(agent, stored.name)
    await stream.send({"type": "result", "ok": error is None, "error": error,
                       "containers": [v.to_json() for v in views
                                      if not v.oneoff and v.service in services]})
    return stream.response


async def _follow(agent: server.Agent, queue: asyncio.Queue, stream: _Stream, name: str,
                  generation: int, began: float, deadline: float) -> str | None:
    """Steps of `name` to the stream until `generation` is applied (None) or why not: the
    agent gave up, or a step of this submission failed and the agent will try again later
    (`up` then reports it, as docker compose does, while the agent goes on converging)."""
    look = True
    while True:
        outcome = _outcome(agent, name, generation, began, deadline) if look else None
        if outcome is not None:
            while not queue.empty():  # what happened before the verdict is shown first
                await _send_step(agent, stream, name, queue.get_nowait())
            return outcome or None
        try:
            event = await asyncio.wait_for(queue.get(), 0.5)
        except TimeoutError:
            look = True  # now and then, whatever happened: the deadline, a missed event
            continue
        await _send_step(agent, stream, name, event)
        # Only the end of a reconcile or a failed step can change the verdict: reading the
        # store on every step of a large stack would cost the loop more than the steps.
        look = event.project == name and (event.type in ("reconcile", "project")
                                           or event.status == "failed")


def _outcome(agent: server.Agent, name: str, generation: int, began: float,
             deadline: float) -> str | None:
    """"" when done, why it failed, or None while it goes on."""
    record = agent.store.get(name)
    if record is None or record.applied_generation >= generation or not agent.reconciling:
        return ""
    if record.generation == generation:
        if record.status == "failed":
            return record.reason or "the agent gave up on this project"
        failed = [e for e in agent.last_steps.get(name, {}).values()
                  if e.status == "failed" and e.time >= began]
        if record.status == "retrying" and failed:
            return f"{record.reason} (the agent keeps trying)"
    if time.monotonic() > deadline:
        return (f"project {name} did not converge in time (status {record.status}: "
                f"{record.reason})")
    return None


async def _send_step(agent: server.Agent, stream: _Stream, name: str, event) -> None:
    if event.project == name and event.type == "pull":  # a layer's step: docker's words
        await stream.send({"type": "pull", "image": event.resource, "layer": event.action,
                           "status": event.status, **event.attributes})
    if event.project == name and event.type == "step":
        line = {"type": "step", **json.loads(event.to_json())}
        if event.action == "await" and agent.ops:
            line["containers"] = await _waited_for(agent, name, event.resource)
        await stream.send(line)


async def _waited_for(agent: server.Agent, name: str, resource: str) -> list[str]:
    """The containers a depends_on condition waits for (`service:db`): docker compose says
    `Waiting`, then `Healthy` or `Exited`, of each."""
    service = resource.partition(":")[2]
    return [b.name for b in await agent.ops.containers(name)
            if b.service == service and not b.oneoff] if agent.ops else []


def _ops(agent: server.Agent) -> ContainerOps:
    """The runtime of an agent that found containers to act on: only one with a runtime does."""
    if agent.ops is None:
        raise RuntimeError("this agent runs without a container runtime")
    return agent.ops


async def _views(agent: server.Agent, name: str) -> list:
    return await agent.ops.containers(name) if agent.ops else []


async def _wait_healthy(agent: server.Agent, name: str, services: list[str],
                        deadline: float) -> str | None:
    """`up --wait`: every container running, and healthy where it has a check; a one-shot
    job that finished well (exit 0) counts as done, as docker compose counts it."""
    while True:
        views = [v for v in await _views(agent, name) if v.service in services and not v.oneoff]
        done = [v for v in views if v.state == "exited" and v.exit_code == 0]
        bad = [v for v in views if v not in done
               and (v.state != "running" or v.health == "unhealthy")]
        waiting = [v for v in views if v.health == "starting"]
        if any(v.health == "unhealthy" or (v.state == "exited" and v.exit_code) for v in bad):
            return "; ".join(f"container {v.name} is {_failed_state(v)}" for v in bad)
        if not bad and not waiting:
            return None
        if time.monotonic() > deadline:
            return f"timeout waiting for {', '.join(v.name for v in bad + waiting)}"
        await asyncio.sleep(HEALTH_POLL)


def _failed_state(view) -> str:
    if view.health == "unhealthy":
        return "unhealthy"
    if view.state == "exited":
        return f"exited ({view.exit_code})"
    return view.state


@routes.post("/v1/down")
async def down(request: web.Request) -> web.StreamResponse:
    agent = request.app[server.AGENT]
    body = await server.json_body(request)
    try:
        volumes = body.get("volumes", False)
        if not isinstance(volumes, bool):
            raise ValueError("volumes: expected true or false")
        stop_timeout = _float(body, "timeout", None)
    except ValueError as wrong:
        raise server.bad_request(str(wrong)) from None
    name, _ = await _project_of(request, body, {"project", "load", "volumes", "timeout"})
    views = await _views(agent, name)
    record = agent.store.get(name)
    # Refused (503) before anything stops or the stream opens.
    await cluster_projects.withdraw(request.app, name)  # also when `up` ran on another node
    stream = _Stream(request)
    await stream.open()
    await stream.send({"type": "accepted", "project": name, "known": record is not None})
    queue = agent.bus.subscribe()
    try:
        # The project is held from the first stop to the removal's request: a pass woken by
        # the exits meanwhile would plan from the old generation and take the containers it
        # saw dying for ones to repair.
        async with agent.ops.serial(name) if agent.ops else contextlib.nullcontext():
            if agent.ops:
                # Every container stops as docker compose stops it, with its stop signal and
                # SIGKILL only after its grace period (or -t), dependents before what they
                # depend on; the loop's removal steps then find them stopped.
                for wave in _stop_waves(views, record):
                    await _stop_wave(agent, stream, wave, stop_timeout)
                # One-off containers (`run` without --rm) are not the loop's: they go first,
                # or their endpoints would keep the project's networks in use.
                await agent.ops.remove([v.id for v in views if v.oneoff])
                if record is None:
                    await agent.ops.remove([v.id for v in views if not v.oneoff])
            removing = server.remove(agent, name, volumes) if record is not None else None
        if record is None:
            await stream.send({"type": "result", "ok": True, "error": None,
                               "containers": [v.name for v in views], "networks": [],
                               "volumes": []})
            return stream.response
        error = await _follow(agent, queue, stream, name, removing.generation, time.time(),
                              time.monotonic() + DEFAULT_TIMEOUT) if removing else None
    finally:
        agent.bus.unsubscribe(queue)
    stack = json.loads(record.stack)
    await stream.send({"type": "result", "ok": error is None, "error": error,
                       "containers": [v.name for v in views],
                       "networks": _networks(name, stack),
                       "volumes": _volumes(name, stack) if volumes else []})
    return stream.response


def _stop_waves(views: list, record: store.ProjectRecord | None) -> list[list]:
    """The running containers in docker compose's stop order: one-off containers and those of
    services the stack does not have first, then the services' in reverse depends_on order
    (dependents first), each wave stopped at once."""
    running = [v for v in views if v.state in ("running", "paused")]
    stack = None
    if record is not None:
        try:
            stack = spec_model.Stack.model_validate(json.loads(record.stack))
        except ValueError:
            stack = None  # a stored stack that no longer reads: all at once, as before
    known = set(stack.services) if stack is not None else set()
    first = [v for v in running if v.oneoff or v.service not in known]
    waves = [first] if first else []
    if stack is not None:
        order = graph.stop_order(stack, {v.service for v in running if v not in first})
        waves += [[v for v in running if v not in first and v.service in wave]
                  for wave in order]
    return [w for w in waves if w]


async def _stop_wave(agent: server.Agent, stream: _Stream, views: list,
                     timeout: float | None) -> None:
    """Stop `views` together, with docker compose's `Stopping` and `Stopped` lines."""
    for view in views:
        await stream.send({"type": "progress", "line": f"Container {view.name}  Stopping"})

    async def one(view) -> None:
        await _ops(agent).stop([view.id], timeout)
        await stream.send({"type": "progress", "line": f"Container {view.name}  Stopped"})

    await asyncio.gather(*(one(v) for v in views))


@routes.post("/v1/ps")
async def ps(request: web.Request) -> web.Response:
    """The project's containers as `ps` shows them, and the stack's services when the
    request named files (the CLI checks the services it was given against them)."""
    agent = request.app[server.AGENT]
    body = await server.json_body(request)
    name, project = await _project_of(request, body, {"project", "load", "local"})
    views = await agent.ops.views(name) if agent.ops else []
    rows = [ops.view_json(v) for v in views]
    unreachable: list[str] = []
    if not body.get("local"):  # in a cluster: every node's rows, each with its node
        rows, unreachable = await peers.gather_ps(request, name, rows)
    return web.json_response({
        "project": name, "services": sorted(project.stack.services) if project else None,
        "containers": rows, **({"unreachable": unreachable} if unreachable else {})})


@routes.post("/v1/act")
async def act(request: web.Request) -> web.StreamResponse:
    """A lifecycle verb on the project's containers (of `services` if named), all at once,
    a progress line before and after each; the result says which failed and why."""
    agent = request.app[server.AGENT]
    body = await server.json_body(request)
    try:
        verb = body.get("verb")
        if verb not in ops.VERBS:
            raise ValueError(f"verb: expected one of {', '.join(ops.VERBS)}")
        services = body.get("services") or []
        if not isinstance(services, list) or not all(isinstance(x, str) for x in services):
            raise ValueError("services: expected a list of names")
        timeout = _float(body, "timeout", None)
        signal = body.get("signal", "SIGKILL")
        if not isinstance(signal, str):
            raise ValueError("signal: expected a name or a number")
        remove_orphans = body.get("remove_orphans", False)
        if not isinstance(remove_orphans, bool):
            raise ValueError("remove_orphans: expected true or false")
        volumes = body.get("volumes", False)
        if not isinstance(volumes, bool):
            raise ValueError("volumes: expected true or false")
        chosen = body.get("containers")
        if chosen is not None and (not isinstance(chosen, list)
                                   or not all(isinstance(x, str) for x in chosen)):
            raise ValueError("containers: expected a list of names")
    except ValueError as error:
        raise server.bad_request(str(error)) from None
    name, project = await _project_of(request, body, {"project", "load", "verb", "services",
                                                      "timeout", "signal", "remove_orphans",
                                                      "containers", "volumes", "local"})
    missing = [s for s in services if project and s not in project.stack.services]
    if missing:
        raise server.bad_request(f"no such service: {missing[0]}")
    states, before, after = ops.VERBS[verb]
    # One actor per project: the loop plans no pass from a look the verb makes stale.
    async with agent.ops.serial(name) if agent.ops else contextlib.nullcontext():
        found = [v for v in await _views(agent, name) if not v.oneoff]
        views = [v for v in found if v.state in states and (not services or v.service in services)
                 and (chosen is None or v.name in chosen)]
        # `kill --remove-orphans`: containers of services the stack no longer has (the stored
        # stack's services when the request named the project only).
        defined = set(project.stack.services) if project else _stored_services(agent, name)
        orphans = [v for v in found if v.service not in defined] if remove_orphans else []
        views = [v for v in views if v not in orphans]
        if verb == "rm" and views:
            # Wanted no more before it goes: a reconcile of the project does not make it again.
            agent.store.hold_removed(name, {v.resource for v in views})
        stream = _Stream(request)
        await stream.open()
        failures: list[str] = []

        async def one(view) -> None:
            await stream.send({"type": "progress", "line": f"Container {view.name}  {before}"})
            try:
                await _ops(agent).act(verb, view.id, view.state, timeout=timeout, signal=signal,
                                      volumes=volumes)
            except Exception as error:  # one container's failure does not stop the others
                failures.append(f"container {view.name}: {error}".strip())
                await stream.send({"type": "progress", "line": f"Container {view.name}  Error"})
                return
            await stream.send({"type": "progress", "line": f"Container {view.name}  {after}"})

        await asyncio.gather(*(one(v) for v in views))
        if verb == "rm" and views and agent.on_change:
            agent.on_change(name)  # one made again by a pass that looked before goes (the plan)
        if orphans:
            agent.store.drop_services(name, {v.service for v in orphans})
        for orphan in orphans:
            await stream.send({"type": "progress", "line": f"Container {orphan.name}  Removing"})
            await _ops(agent).remove([orphan.id])
            await stream.send({"type": "progress", "line": f"Container {orphan.name}  Removed"})
    if not body.get("local"):  # in a cluster: the other nodes' containers too
        failures += await peers.forward_act(request, name, body, stream.send)
    await stream.send({"type": "result", "ok": not failures, "error": "; ".join(failures) or None})
    return stream.response


@routes.post("/v1/prune")
async def prune(request: web.Request) -> web.Response:
    """Remove those of the given containers that do not run (the CLI chose them by its
    filters; each is looked at again here). A project's container is held removed first, as
    `rm` holds it, so that no pass makes it again until a submission asks for its service."""
    agent = request.app[server.AGENT]
    body = await server.json_body(request)
    chosen = body.get("containers")
    if set(body) - {"containers"} or not isinstance(chosen, list) \
            or not all(isinstance(x, str) for x in chosen):
        raise server.bad_request("request body: expected {\"containers\": [ID, ...]}")
    touched: set[str] = set()

    def removing(view) -> None:
        if not view.oneoff:
            agent.store.hold_removed(view.project, {f"service:{view.service}:{view.replica}"})
            touched.add(view.project)

    removed = await agent.ops.prune(set(chosen), removing) if agent.ops else []
    for project in sorted(touched):
        if agent.on_change:
            agent.on_change(project)
    return web.json_response({"removed": [[cid, freed] for cid, freed in removed]})


def _stored_services(agent: server.Agent, name: str) -> set[str]:
    record = agent.store.get(name)
    return set(json.loads(record.stack).get("services") or {}) if record else set()


@routes.get("/v1/ls")
async def ls(request: web.Request) -> web.Response:
    """Projects the agent keeps and projects that only have containers (one-off ones left
    after a `down` of another agent, say), with their containers' states."""
    agent = request.app[server.AGENT]
    states = await agent.ops.states() if agent.ops else {}
    rows = [{"name": r.name, "status": r.status, "config_files": list(r.config_files),
             "states": states.pop(r.name, [])} for r in agent.store.list()]
    rows += [{"name": name, "status": "", "config_files": [], "states": found}
             for name, found in states.items()]
    return web.json_response(sorted(rows, key=lambda r: r["name"]))


async def _project_of(request: web.Request, body: dict, allowed: set[str]):
    """The project a request names: by `project`, or by loading `load`'s stack (then also
    returned); 400 when the body is wrong."""
    try:
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise ValueError(f"request body: unknown key(s) {', '.join(unknown)}")
        name = body.get("project")
        if name is not None:
            if not isinstance(name, str):
                raise ValueError("project: expected a name")
            server.check_name(name)
            return name, None
        load = submit.LoadRequest.from_json(body.get("load"))
    except ValueError as error:
        raise server.bad_request(str(error)) from None
    project = await _load(load)
    return project.name, project


def _networks(project: str, stack: dict) -> list[str]:
    """The project's own networks; a network exists only when a service joins it."""
    services = (stack.get("services") or {}).values()
    return [net.get("name") or naming.scoped(project, key)
            for key, net in sorted((stack.get("networks") or {}).items())
            if not net.get("external") and any(key in (s.get("networks") or {})
                                               for s in services)]


def _volumes(project: str, stack: dict) -> list[str]:
    return [vol.get("name") or naming.scoped(project, key)
            for key, vol in sorted((stack.get("volumes") or {}).items())
            if not vol.get("external")]

