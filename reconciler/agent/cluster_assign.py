"""In cluster mode, this agent runs what the scheduler assigned to its node: it watches its
own assignments and the projects, and stores for each project the submission as this node
runs it (cluster_projects.for_node), which the single-host loop converges as any `up`.

Level-triggered: an event only marks the world dirty; each pass reads the node's
assignments and the projects afresh and stores a project only when what this node should
run of it changed. A project withdrawn from the cluster is taken down here if this agent
stored it from the cluster since it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

import structlog
from aiohttp import web

from reconciler.agent import cluster_depends, cluster_projects, cluster_rollout, server, store
from reconciler.cluster import desired, etcd, membership
from reconciler.plan import model

log = structlog.get_logger(__name__)

RESYNC = 30.0


class Assigned:
    """`await Assigned(agent, member).run()` for the agent's life in a cluster."""

    def __init__(self, agent: server.Agent, member: membership.Membership, *,
                 resync: float = RESYNC) -> None:
        self.agent, self.member, self.resync = agent, member, resync
        self._dirty = asyncio.Event()
        self._managed: set[str] = set()

    async def run(self) -> None:
        pause = 0.5
        while True:
            try:
                await self._follow()
            except etcd.EtcdError as error:
                log.warning("cluster.assignments_unavailable", error=str(error))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def _follow(self) -> None:
        revision, _ = await self.member.client.range(desired.LEADER)
        watchers = [asyncio.ensure_future(self._watch(prefix, revision + 1))
                    for prefix in (desired.node_assignments(self.member.id), desired.PROJECTS,
                                   cluster_depends.STATUS)]
        try:
            while True:
                self._dirty.clear()
                await self.sync()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.resync):
                        await self._dirty.wait()
                for watcher in watchers:
                    if watcher.done():
                        watcher.result()
        finally:
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def _watch(self, prefix: str, revision: int) -> None:
        while True:
            try:
                async for event in self.member.client.watch(prefix, start_revision=revision):
                    revision = event.revision + 1
                    self._dirty.set()
            except etcd.Compacted:
                revision = (await self.member.client.range(desired.LEADER))[0] + 1
                self._dirty.set()

    async def sync(self) -> None:
        """One pass: store what this node should run of each project, where it changed."""
        mine = await cluster_projects.assigned_here(self.member)
        _, kvs = await self.member.client.range(desired.PROJECTS)
        submissions, generations, rollouts = {}, {}, {}
        for kv in kvs:
            parsed = desired.parse_project_key(kv.key)
            if parsed is not None and not parsed[1]:
                found = desired.submission_of(kv.value)
                if found is not None:
                    submissions[parsed[0]] = found
                    generations[parsed[0]] = cluster_rollout.generation_of(kv.value)
            elif (rolling := cluster_rollout.parse_key(kv.key)) is not None:
                with contextlib.suppress(ValueError):
                    rollouts[rolling] = kv.json()
        for name, submission in sorted(submissions.items()):
            stored = self.agent.store.get(name)
            if name not in mine and name not in self._managed and stored is None:
                continue  # nothing of it here, ever
            here = mine.get(name, {})
            body = cluster_rollout.apply(  # a rolling service: its old definition until released
                cluster_projects.for_node(submission, here), rollouts.get(name),
                generations.get(name, 0), here)
            body = await cluster_depends.gate(  # dependencies on other nodes: from their status
                self.member.client, body, name, here,
                cluster_depends.existing(self.agent, name))
            try:
                record = server.record_from_body(name, body)
            except (ValueError, KeyError, TypeError, web.HTTPException) as error:
                log.warning("cluster.project_unreadable", project=name, error=str(error))
                continue
            self._managed.add(name)
            if stored is None or stored.status == store.REMOVING or _differs(stored, record):
                server.accept(self.agent, record)
                log.info("cluster.assignments_applied", project=name,
                         replicas=sum(len(s) for s in mine.get(name, {}).values()))
        for name in sorted(self._managed - set(submissions)):
            self._managed.discard(name)
            stored = self.agent.store.get(name)
            if stored is not None and stored.status != store.REMOVING:
                server.remove(self.agent, name, False)
                log.info("cluster.project_withdrawn_here", project=name)


def _differs(stored: store.ProjectRecord, record: store.ProjectRecord) -> bool:
    """Whether storing `record` changes what the loop would do."""
    def same_time(options: model.DiffOptions) -> model.DiffOptions:
        return dataclasses.replace(options, submitted_at=0.0)

    return (stored.stack, stored.hashes, same_time(stored.options)) != (
        record.stack, record.hashes, same_time(record.options))
