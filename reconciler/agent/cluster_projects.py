"""In cluster mode, what `up` and `down` tell the cluster: an `up` is refused at once when a
service's placement can never hold (a typo in a constraint key, constraints no node meets),
then stores the project under /pcompose/v1/projects/<name> for the scheduler; `down` removes
it, and the scheduler removes its assignments. Outside a cluster these do nothing."""

from __future__ import annotations

import copy
import json
from typing import Any

import structlog
from aiohttp import web

from reconciler.agent import nodes
from reconciler.cluster import desired, etcd, membership, placement

log = structlog.get_logger(__name__)


class Refused(Exception):
    """The project can't be placed as written: the message names each service and why."""


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
    known = [desired.to_placement(n, ready=n.status == membership.READY, holding=False)
             for n in await membership.list_nodes(member.client)]
    errors = placement.impossible(known, project.services)
    if errors:
        raise Refused("; ".join(errors[s] for s in sorted(errors)))


async def publish(app: web.Application, name: str, generation: int,
                  submission: dict[str, Any]) -> None:
    """The project as the scheduler reads it, at this generation."""
    member = _member(app)
    if member is None:
        return
    await member.client.put(desired.project(name),
                            desired.record(name, generation, stack_of(submission)))
    log.info("cluster.project_published", project=name, generation=generation)


async def withdraw(app: web.Application, name: str) -> None:
    """The project and its status gone: the scheduler then removes its assignments."""
    member = _member(app)
    if member is None:
        return
    await member.client.txn([], [etcd.delete_op(desired.project(name)),
                                 etcd.delete_op(desired.project(name) + "/", prefix=True)])
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
