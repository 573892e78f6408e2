"""depends_on across a cluster's hosts: each agent publishes the state of its replicas under its
node lease (/pcompose/v1/status/<project>/<service>/<slot>), and a replica whose dependency
runs on other nodes only is made once the condition holds there, as read from that status.

A dependency that has replicas on this node is left to the single-host plan, which waits for
it as on one host. One that has none here is taken out of the node's share of the stack (the
plan could only wait for containers it sees) and gates the dependent's replicas instead: a
replica not made yet is held back (marked removed, so the plan makes nothing of it) until the
condition holds cluster-wide; one that exists already is never taken down for it, as docker
compose looks at depends_on only when it starts a service."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog

from reconciler.agent import ops, server
from reconciler.cluster import etcd, keys, membership

log = structlog.get_logger(__name__)

STATUS = keys.PREFIX + "status/"
POLL = 1.0  # seconds between two looks at this node's containers, unless an event comes first
SETTLE = 0.2  # seconds at least between two looks: a burst of events costs one look


def status_key(project: str, service: str, slot: int) -> str:
    return f"{STATUS}{project}/{service}/{slot}"


def project_status(project: str) -> str:
    return f"{STATUS}{project}/"


class Publisher:
    """`await Publisher(agent, member).run()`: this node's replicas' state in etcd, under the
    node lease (a dead node's entries go with it), kept as they change."""

    def __init__(self, agent: server.Agent, member: membership.Membership) -> None:
        self.agent, self.member = agent, member
        self.current: dict[str, str] = {}  # what this node's replicas' keys should hold
        self._put: dict[str, str] = {}  # what was put under `_lease`
        self._lease = 0
        # Re-registration after a lost lease puts these back in the same transaction.
        member.extra.append(lambda: list(self.current.items()))

    async def run(self) -> None:
        queue = self.agent.bus.subscribe()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL):
                        await queue.get()
                while not queue.empty():
                    queue.get_nowait()
                try:
                    await self.publish()
                except (etcd.EtcdError, OSError) as error:
                    log.warning("cluster.status_not_published", error=str(error))
                await asyncio.sleep(SETTLE)
        finally:
            self.agent.bus.unsubscribe(queue)

    async def look(self) -> dict[str, str]:
        the_ops = self.agent.ops
        if not isinstance(the_ops, ops.Ops):
            return {}
        found = {}
        for record in self.agent.store.list():
            for brief in await the_ops.containers(record.name):
                if brief.oneoff or not brief.replica:
                    continue
                found[status_key(record.name, brief.service, brief.replica)] = json.dumps(
                    {"node": self.member.config.name, "state": brief.state, "id": brief.id,
                     "health": brief.health, "exit_code": brief.exit_code}, sort_keys=True)
        return found

    async def publish(self) -> None:
        await self.member.registered.wait()
        self.current = await self.look()
        lease = self.member.lease_id
        if lease != self._lease:  # a new lease: nothing of ours is under it yet
            self._put, self._lease = {}, lease
        puts = [etcd.put_op(k, v, lease=lease) for k, v in self.current.items()
                if self._put.get(k) != v]
        gone = [etcd.delete_op(k) for k in self._put if k not in self.current]
        if puts or gone:
            await self.member.client.txn([], puts + gone)
            self._put = dict(self.current)


def holds(condition: str, entries: Iterable[dict[str, Any]]) -> bool:
    """Whether a dependency's condition holds, from the status of its replicas."""
    found = list(entries)
    if not found:
        return False
    if condition == "service_healthy":
        return all(e.get("health") == "healthy" for e in found)
    if condition == "service_completed_successfully":
        return all(e.get("state") == "exited" and e.get("exit_code") == 0 for e in found)
    return all(e.get("state") in ("running", "paused", "exited") for e in found)


async def cluster_status(client: etcd.Client, project: str) -> dict[str, list[dict]]:
    """service -> the status of each of its replicas, on every node."""
    _, kvs = await client.range(project_status(project))
    found: dict[str, list[dict]] = {}
    for kv in kvs:
        service = kv.key[len(project_status(project)):].partition("/")[0]
        with contextlib.suppress(ValueError):
            value = kv.json()
            if isinstance(value, dict):
                found.setdefault(service, []).append(value)
    return found


async def gate(client: etcd.Client, body: dict[str, Any], name: str,
               slots: dict[str, set[int]],
               existing: Callable[[], Awaitable[set[tuple[str, int]]]]) -> dict[str, Any]:
    """The node's share of a project (cluster_projects.for_node's body) with each dependency
    on other nodes only taken out, and the replicas it gates that do not exist yet held back
    until its condition holds cluster-wide. `existing()`: (service, slot) made here already,
    looked at only when a service waits."""
    services = body["stack"].get("services") or {}
    remote = {s for s in services if not slots.get(s)}
    waiting = {s: deps for s, deps in ((s, (services[s].get("depends_on") or {}))
                                       for s in services if slots.get(s))
               if set(deps) & remote}
    if not waiting:
        return body
    status = await cluster_status(client, name)
    made = await existing()
    body = copy.deepcopy(body)
    services = body["stack"]["services"]
    removed = set(body["options"].get("removed") or [])
    for service, deps in sorted(waiting.items()):
        unmet = [d for d in sorted(set(deps) & remote)
                 if deps[d].get("required", True)
                 and not holds(str(deps[d].get("condition", "service_started")),
                               status.get(d, []))]
        services[service]["depends_on"] = {d: v for d, v in deps.items() if d not in remote}
        if unmet:
            held = {n for n in slots[service] if (service, n) not in made}
            removed |= {f"service:{service}:{n}" for n in held}
            if held:
                log.info("cluster.waiting_for_dependency", project=name, service=service,
                         dependencies=unmet)
    body["options"]["removed"] = sorted(removed)
    return body


def existing(agent: server.Agent, project: str
             ) -> Callable[[], Awaitable[set[tuple[str, int]]]]:
    """gate's `existing`: (service, slot) of the project's replicas this node has made."""
    async def look() -> set[tuple[str, int]]:
        the_ops = agent.ops
        if not isinstance(the_ops, ops.Ops):
            return set()
        return {(b.service, b.replica) for b in await the_ops.containers(project)
                if not b.oneoff}
    return look
