"""Rolling updates in a cluster: a changed service's replicas take the new definition a batch at
a time (deploy.update_config: parallelism, delay, monitor, failure_action), as swarm rolls a
service; a batch that fails (its new containers exit, or do not run within the monitor period)
stops the rollout, and with `failure_action: rollback` the previous generation is published
again, so that every replica runs the definition it ran before.

The rollout lives in etcd beside the project (/pcompose/v1/projects/<name>/rollout):
{generation, previous (the submission before), services: {service: [released slots]},
state}. While it is on, each agent runs the previous definition of a rolling service on its
node until every slot of it there is released (the single-host plan has one definition per
service and node), then the new one. The agent that took the `up` drives it; each replica's
state comes from the status the agents publish (cluster_depends)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from typing import Any

import structlog

from reconciler.agent import cluster_depends
from reconciler.cluster import desired, etcd

log = structlog.get_logger(__name__)

MONITOR = 5.0  # seconds a new replica must keep running (swarm's default monitor)
WAIT = 120.0  # seconds a released replica has to run its new definition at all
ROLLING, DONE, PAUSED, ROLLED_BACK = "updating", "completed", "paused", "rolled_back"
_running: set[asyncio.Task] = set()  # the rollouts this agent drives


def key(project: str) -> str:
    return desired.project(project) + "/rollout"


def _seconds(text: object, default: float) -> float:
    """A compose duration (1m30s, 500ms, 2s) or a number of seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    if not isinstance(text, str) or not text:
        return default
    total, number = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    i = 0
    while i < len(text):
        if text[i].isdigit() or text[i] == ".":
            number += text[i]
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else "us" if text.startswith("us", i) \
            else text[i]
        if unit not in units or not number:
            return default
        total += float(number) * units[unit]
        number, i = "", i + len(unit)
    return total + (float(number) if number else 0.0)


def changed(previous: dict[str, Any], submission: dict[str, Any]) -> list[str]:
    """The services of both submissions whose definition (config hash) changed."""
    before, after = previous.get("hashes") or {}, submission.get("hashes") or {}
    return sorted(s for s in after if s in before and before[s] != after[s])


def start(client: etcd.Client, project: str, generation: int, previous: dict[str, Any],
          submission: dict[str, Any], services: list[str]) -> None:
    """Drive the rollout of `services` in the background (the `up` does not wait for it)."""
    task = asyncio.ensure_future(_drive(client, project, generation, previous, submission,
                                        services))
    _running.add(task)
    task.add_done_callback(_running.discard)


def rollout_value(generation: int, previous: dict[str, Any], services: dict[str, list[int]],
                  state: str = ROLLING, reason: str = "") -> str:
    return json.dumps({"generation": generation, "previous": previous, "services": services,
                       "state": state, "reason": reason}, sort_keys=True)


def apply(body: dict[str, Any], rollout: dict[str, Any] | None, generation: int,
          slots: dict[str, set[int]]) -> dict[str, Any]:
    """This node's share (cluster_projects.for_node's body) with each rolling service whose
    slots here are not all released yet on its previous definition."""
    if not rollout or rollout.get("generation") != generation or \
            rollout.get("state") not in (ROLLING, PAUSED):
        return body
    previous = rollout.get("previous") or {}
    old_services = (previous.get("stack") or {}).get("services") or {}
    old_hashes = previous.get("hashes") or {}
    body = copy.deepcopy(body)
    for service, released in (rollout.get("services") or {}).items():
        here = slots.get(service, set())
        if here and not here <= set(released) and service in old_services:
            body["stack"]["services"][service] = copy.deepcopy(old_services[service])
            if service in old_hashes:
                body.setdefault("hashes", {})[service] = old_hashes[service]
    return body


async def read(client: etcd.Client, project: str) -> dict[str, Any] | None:
    found = await client.get(key(project))
    if found is None:
        return None
    with contextlib.suppress(ValueError):
        value = found.json()
        if isinstance(value, dict):
            return value
    return None


async def _drive(client: etcd.Client, project: str, generation: int,
                 previous: dict[str, Any], submission: dict[str, Any],
                 services: list[str]) -> None:
    released: dict[str, list[int]] = {s: [] for s in services}
    try:
        for service in services:
            failure = await _roll(client, project, generation, previous, submission, service,
                                  released)
            if failure is not None:
                await _failed(client, project, generation, previous, submission, service,
                              released, failure)
                return
        await client.put(key(project), rollout_value(generation, previous, released, DONE))
        log.info("rollout.completed", project=project, generation=generation,
                 services=services)
    except (etcd.EtcdError, OSError) as error:
        log.error("rollout.interrupted", project=project, generation=generation,
                  error=str(error))


async def _current(client: etcd.Client, project: str) -> int:
    found = await client.get(desired.project(project))
    return generation_of(found.value) if found is not None else 0


def generation_of(value: bytes) -> int:
    """The generation of a project's record (0 for one that has none)."""
    try:
        found = json.loads(value).get("generation", 0)
        return found if isinstance(found, int) else 0
    except (ValueError, AttributeError):
        return 0


def parse_key(name: str) -> str | None:
    """The project of a rollout key, None for any other key."""
    parsed = name[len(desired.PROJECTS):].partition("/") if name.startswith(
        desired.PROJECTS) else ("", "", "")
    return parsed[0] if parsed[0] and parsed[2] == "rollout" else None


def rolling(previous: dict[str, Any] | None, submission: dict[str, Any]) -> list[str]:
    """The services an `up` rolls: changed ones with deploy.update_config."""
    if previous is None:
        return []
    services = submission["stack"].get("services") or {}
    return [s for s in changed(previous, submission)
            if (services.get(s, {}).get("deploy") or {}).get("update_config")]


async def share(client: etcd.Client, project: str, body: dict[str, Any],
                slots: dict[str, set[int]]) -> dict[str, Any]:
    """apply(), with the rollout and the generation read from etcd."""
    found = await client.get(desired.project(project))
    if found is None:
        return body
    return apply(body, await read(client, project), generation_of(found.value), slots)


async def _slots(client: etcd.Client, project: str, service: str) -> list[int]:
    _, kvs = await client.range(desired.ASSIGNMENTS)
    return sorted({a.slot for a in map(desired.parse_assignment, (kv.key for kv in kvs))
                   if a is not None and a.project == project and a.service == service})


async def _replicas(client: etcd.Client, project: str, service: str) -> dict[int, dict]:
    prefix = cluster_depends.project_status(project) + f"{service}/"
    _, kvs = await client.range(prefix)
    found = {}
    for kv in kvs:
        slot = kv.key[len(prefix):]
        with contextlib.suppress(ValueError):
            value = kv.json()
            if slot.isdigit() and isinstance(value, dict):
                found[int(slot)] = value
    return found


async def _roll(client: etcd.Client, project: str, generation: int, previous: dict[str, Any],
                submission: dict[str, Any], service: str,
                released: dict[str, list[int]]) -> str | None:
    """Release `service`'s slots a batch at a time; the reason of the first failed batch."""
    update = ((submission["stack"]["services"][service].get("deploy") or {})
              .get("update_config") or {})
    parallelism = int(update.get("parallelism") or 1) or 1_000_000  # 0: all at once
    delay = _seconds(update.get("delay"), 0.0)
    monitor = _seconds(update.get("monitor"), MONITOR)
    slots = await _slots(client, project, service)
    for first in range(0, len(slots), parallelism):
        if await _current(client, project) != generation:
            return None  # a newer `up` took over: this rollout has nothing left to do
        batch = slots[first:first + parallelism]
        before = await _replicas(client, project, service)
        released[service] = sorted(set(released[service]) | set(batch))
        await client.put(key(project), rollout_value(generation, previous, released))
        log.info("rollout.batch", project=project, service=service, slots=batch)
        failure = await _watch(client, project, service, batch, before, monitor)
        if failure is not None:
            return failure
        if first + parallelism < len(slots):
            await asyncio.sleep(delay)  # update_config.delay: between batches, as swarm
    return None


async def _watch(client: etcd.Client, project: str, service: str, batch: list[int],
                 before: dict[int, dict], monitor: float) -> str | None:
    """Until each slot of `batch` runs a new container (another id than `before`'s) that keeps
    running for `monitor` seconds; the reason when one does not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    started: dict[int, float] = {}
    while True:
        now = {s: v for s, v in (await _replicas(client, project, service)).items()
               if s in batch}
        for slot in batch:
            value = now.get(slot) or {}
            old = (before.get(slot) or {}).get("id")
            if not value.get("id") or value.get("id") == old:
                continue
            if value.get("state") == "exited":
                return (f"replica {slot} of service {service} exited with code "
                        f"{value.get('exit_code')}")
            if value.get("state") == "running":
                started.setdefault(slot, loop.time())
        if len(started) == len(batch) and all(loop.time() - t >= monitor
                                              for t in started.values()):
            return None
        if loop.time() > deadline:
            return f"replicas {batch} of service {service} did not run within {WAIT:g} s"
        await asyncio.sleep(0.5)


async def _failed(client: etcd.Client, project: str, generation: int,
                  previous: dict[str, Any], submission: dict[str, Any], service: str,
                  released: dict[str, list[int]], failure: str) -> None:
    update = ((submission["stack"]["services"][service].get("deploy") or {})
              .get("update_config") or {})
    action = str(update.get("failure_action") or "pause")
    log.warning("rollout.failed", project=project, service=service, reason=failure,
                action=action)
    if action == "rollback":
        # The previous definition, as a new generation: every agent goes back to it.
        from reconciler.agent import cluster_projects

        current = await client.get(desired.project(project))
        if current is None or generation_of(current.value) != generation:
            return  # withdrawn, or a newer `up` took over
        record = desired.record(project, generation + 1,
                                cluster_projects.stack_of(previous), previous)
        won, _ = await client.txn(
            [etcd.compare(desired.project(project), "mod", "=", current.mod_revision)],
            [etcd.put_op(desired.project(project), record),
             etcd.put_op(key(project), rollout_value(generation, previous, released,
                                                     ROLLED_BACK, failure))])
        if won:
            log.warning("rollout.rolled_back", project=project, service=service,
                        generation=generation + 1)
        return
    state = PAUSED if action == "pause" else DONE
    if action == "continue":
        released = {s: await _slots(client, project, s) for s in released}
    await client.put(key(project), rollout_value(generation, previous, released, state,
                                                 failure))
