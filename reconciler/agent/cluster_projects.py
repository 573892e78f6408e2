"""In cluster mode, what `up` and `down` tell the cluster: an `up` is refused at once when a
service's placement can never hold (a typo in a constraint key, constraints no node meets),
then stores the project under /pcompose/v1/projects/<name> for the scheduler; `down` removes
it, and the scheduler removes its assignments. Outside a cluster these do nothing."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from typing import Any

import structlog
from aiohttp import web

from reconciler.agent import cluster_depends, cluster_rollout, nodes, server
from reconciler.cluster import desired, etcd, membership, placement

log = structlog.get_logger(__name__)

VERDICT_WAIT = 10.0  # seconds an `up` waits for the scheduler to place its generation


class Refused(Exception):
    """The project can't be placed as written (the message names each service and why),
    or the cluster's store did not take it."""


def _member(app: web.Application) -> membership.Membership | None:
    cluster = app.get(nodes.CLUSTER)
    return cluster.member if cluster is not None else None


def stack_of(submission: dict[str, Any]) -> dict[str, Any]:
    """The normalized stack the cluster runs: the services this `up` wants (those it
    hashed), each with its replica count after --scale."""
    stack = copy.deepcopy(submission["stack"])
    wanted = set(submission.get("hashes") or {})
    scale = (submission.get("options") or {}).get("scale") or {}
    services = {name: service for name, service in (stack.get("services") or {}).items()
                if name in wanted}
    for name, count in scale.items():
        if name in services:
            services[name]["scale"] = int(count)
    stack["services"] = services
    return stack


async def check(app: web.Application, name: str, submission: dict[str, Any]) -> None:
    """Raises Refused when a service of the project can never be placed in this cluster."""
    member = _member(app)
    if member is None:
        return
    project = desired.read_project(name, desired.record(name, 0, stack_of(submission))
                                   .encode())
    try:
        listed = await membership.list_nodes(member.client)
    except etcd.EtcdError as error:
        raise Refused(f"the cluster's store is unavailable: {error}") from None
    known = [desired.to_placement(n, ready=n.status == membership.READY, holding=False)
             for n in listed]
    errors = placement.impossible(known, project.services)
    if errors:
        raise Refused("; ".join(errors[s] for s in sorted(errors)))


async def publish(app: web.Application, name: str, submission: dict[str, Any], *,
                  wait: float = VERDICT_WAIT) -> list[str]:
    """The project stored for the scheduler and every agent, one generation on; then the
    scheduler's verdict on that generation, as warnings for the user (a service that is
    short of nodes, a replica that moved without its volume's data). Outside a cluster:
    nothing, and no warnings."""
    member = _member(app)
    if member is None:
        return []
    key = desired.project(name)
    try:
        for _ in range(10):  # compare-and-swap: two `up`s from two hosts, two generations
            before = await member.client.get(key)
            generation = _generation(before.value if before else None) + 1
            # A changed service with update_config rolls a batch at a time (cluster_rollout).
            previous = desired.submission_of(before.value) if before else None
            rolling = cluster_rollout.rolling(previous, submission)
            rollout = [etcd.put_op(cluster_rollout.key(name), cluster_rollout.rollout_value(
                generation, previous or {}, {s: [] for s in rolling}))] if rolling else []
            won, _ = await member.client.txn(
                [etcd.compare(key, "mod", "=", before.mod_revision if before else 0)],
                [etcd.put_op(key, desired.record(name, generation, stack_of(submission),
                                                 submission)), *rollout])
            if won:
                log.info("cluster.project_published", project=name, generation=generation)
                if rolling and previous is not None:
                    cluster_rollout.start(member.client, name, generation, previous,
                                          submission, rolling)
                return await _verdict(member.client, name, generation, wait)
    except etcd.EtcdError as error:  # unavailable, or a record larger than etcd takes
        raise Refused(f"project {name} could not be stored in the cluster: {error}") \
            from None
    raise Refused(f"project {name}: its record in the cluster kept changing; try again")


async def _verdict(client: etcd.Client, name: str, generation: int, wait: float) -> list[str]:
    key = desired.project_status(name)
    try:
        async with asyncio.timeout(wait):
            revision, found = await client.range(key)
            value = found[0].json() if found and found[0].key == key else {}
            if not _at(value, generation):
                async with contextlib.aclosing(
                        client.watch(key, start_revision=revision + 1)) as events:
                    async for event in events:
                        if event.type == "put" and event.kv.key == key:
                            value = event.kv.json()
                            if _at(value, generation):
                                break
    except TimeoutError:
        return [f"no scheduler placed generation {generation} of project {name} within "
                f"{wait:g} s: its replicas start once one does"]
    except (etcd.EtcdError, ValueError):
        return []
    errors = value.get("errors") or {}
    return [str(errors[s]) for s in sorted(errors)] + [str(w) for w in
                                                        value.get("warnings") or []]


def _at(value: object, generation: int) -> bool:
    return isinstance(value, dict) and isinstance(value.get("generation"), int) and \
        value["generation"] >= generation


def _generation(value: bytes | None) -> int:
    try:
        found = json.loads(value or b"{}").get("generation", 0)
        return int(found) if isinstance(found, int) else 0
    except (ValueError, AttributeError):
        return 0


def for_node(submission: dict[str, Any], slots: dict[str, set[int]]) -> dict[str, Any]:
    """The submission as one node runs it: of each service, the replicas assigned to it
    (`slots`), by their cluster-wide numbers: scaled to the highest, the others marked
    removed as `rm` marks them, so the single-host plan makes exactly these."""
    body = copy.deepcopy(submission)
    options = dict(body.get("options") or {})
    services = body["stack"].get("services") or {}
    removed = set(options.get("removed") or [])
    scale: dict[str, int] = {}
    for service in sorted(body.get("hashes") or services):
        mine = slots.get(service, set())
        scale[service] = max(mine) if mine else 1
        removed |= {f"service:{service}:{n}" for n in range(1, scale[service] + 1)
                    if n not in mine}
    options["scale"], options["removed"] = scale, sorted(removed)
    body["options"] = options
    return body


async def local(app: web.Application, name: str, submission: dict[str, Any]) -> dict[str, Any]:
    """What this node runs of an `up`'s submission: in a cluster, only the replicas the
    scheduler assigned to it (none of a new project yet: they come as it assigns them)."""
    member = _member(app)
    if member is None:
        return submission
    try:
        here = (await assigned_here(member)).get(name, {})
    except etcd.EtcdError as error:  # none for now: they come when the store answers
        log.warning("cluster.assignments_unavailable", project=name, error=str(error))
        here = {}
    try:
        body = await cluster_rollout.share(member.client, name, for_node(submission, here),
                                           here)
        return await cluster_depends.gate(member.client, body, name, here,
                                          cluster_depends.existing(app[server.AGENT], name))
    except etcd.EtcdError:
        return for_node(submission, here)


async def assigned_here(member: membership.Membership) -> dict[str, dict[str, set[int]]]:
    """This node's assignments: project -> service -> slots."""
    _, kvs = await member.client.range(desired.node_assignments(member.id))
    found: dict[str, dict[str, set[int]]] = {}
    for kv in kvs:
        slot = desired.parse_assignment(kv.key)
        if slot is not None:
            found.setdefault(slot.project, {}).setdefault(slot.service, set()).add(slot.slot)
    return found


async def withdraw(app: web.Application, name: str) -> None:
    """The project and its status gone: the scheduler then removes its assignments."""
    member = _member(app)
    if member is None:
        return
    try:
        await member.client.txn([], [etcd.delete_op(desired.project(name)),
                                     etcd.delete_op(desired.project(name) + "/", prefix=True)])
    except etcd.EtcdError as error:
        # Taken down here only, it would come back from the cluster: refuse instead.
        raise web.HTTPServiceUnavailable(
            text=json.dumps({"error": f"project {name} could not be withdrawn from the "
                                      f"cluster: {error}"}),
            content_type="application/json") from None
    log.info("cluster.project_withdrawn", project=name)


async def status(app: web.Application, name: str) -> dict[str, Any] | None:
    """The scheduler's verdict on the project (errors by service, warnings), if any."""
    member = _member(app)
    if member is None:
        return None
    found = await member.client.get(desired.project_status(name))
    if found is None:
        return None
    try:
        value = json.loads(found.value)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
