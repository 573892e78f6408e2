"""The cluster's one scheduler: elected through an etcd lease, it places every project's
replicas on the nodes and writes the assignments that each agent converges.

Level-triggered: a change under nodes/ or projects/ (or a node's grace period running out,
or the periodic resync) only marks the world dirty; each pass reads nodes, projects and
assignments afresh, places, and writes the difference in transactions that hold only while
this instance still owns the leader key. A new leader resumes from etcd alone: it knows no
more than what is stored, so a node already down when it took over gets a full grace period.
The grace period is the cluster's `scheduler_grace` (seconds, in /pcompose/v1/config) when
set, else the instance's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import structlog

from reconciler.cluster import desired, etcd, keys, membership, placement

log = structlog.get_logger(__name__)

TTL = 10  # seconds of the leader lease: a dead scheduler is replaced this long after
GRACE = 30.0  # seconds a node may stay down before its replicas go elsewhere
RESYNC = 30.0  # seconds between passes when nothing is heard
MAX_OPS = 100  # per transaction: etcd refuses more than --max-txn-ops (128 by default)

T = TypeVar("T")


class LostLeadership(Exception):
    """The lease behind the leader key is gone, or the key is no longer ours."""


@dataclass(frozen=True)
class Pass:
    """What one pass decided: for logs and tests."""

    puts: int
    deletes: int
    errors: Mapping[str, Mapping[str, str]]  # project -> service -> why


class Scheduler:
    """`await Scheduler(client, "node-id").run()` for the agent's life: campaigns, and while
    it leads, schedules. `leading` is set while it does."""

    def __init__(self, client: etcd.Client, identity: str, *, grace: float = GRACE,
                 ttl: int = TTL, resync: float = RESYNC,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client, self.identity = client, identity
        self.grace, self.ttl, self.resync, self.clock = grace, ttl, resync, clock
        self.leading = asyncio.Event()
        self.last: Pass | None = None
        self.passes = 0  # passes completed while leading
        self._dirty = asyncio.Event()
        self._down_since: dict[str, float] = {}

    def poke(self) -> None:
        """Look at the world again now (as a change under a watched prefix does)."""
        self._dirty.set()

    @property
    def down_nodes(self) -> frozenset[str]:
        """The nodes this leader has seen down (inside their grace period or past it)."""
        return frozenset(self._down_since)

    async def run(self) -> None:
        pause = 0.5
        while True:
            try:
                async with self.client.keep(self.ttl) as lease:
                    await _until_lost(lease, self._campaign(lease.id))
                    pause = 0.5
                    self.leading.set()
                    log.info("scheduler.elected", identity=self.identity, lease=lease.id)
                    try:
                        await _until_lost(lease, self._lead(lease.id))
                    finally:
                        self.leading.clear()
            except LostLeadership:
                log.warning("scheduler.leadership_lost", identity=self.identity)
            except etcd.EtcdError as error:
                log.warning("scheduler.etcd_failed", identity=self.identity, error=str(error))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def _campaign(self, lease: int) -> None:
        """Returns once this instance holds the leader key (under `lease`)."""
        value = json.dumps({"identity": self.identity, "lease": lease})
        while True:
            if await self.client.create(desired.LEADER, value, lease=lease):
                return
            revision, held = await self.client.range(desired.LEADER)
            if not held:
                continue
            log.info("scheduler.following", leader=held[0].value.decode(errors="replace"))
            with contextlib.suppress(etcd.Compacted):
                async for event in self.client.watch(desired.LEADER,
                                                     start_revision=revision + 1):
                    if event.type == "delete":
                        break

    async def _lead(self, lease: int) -> None:
        self._down_since.clear()  # what a new leader knows is what etcd holds
        revision, _ = await self.client.range(desired.LEADER)
        watchers = [asyncio.ensure_future(self._watch(prefix, revision + 1))
                    for prefix in (keys.NODES, desired.PROJECTS, keys.CONFIG)]
        try:
            while True:
                self._dirty.clear()
                wake = await self.schedule(lease)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(wake, self.resync)):
                        await self._dirty.wait()
                for watcher in watchers:
                    if watcher.done():
                        watcher.result()  # a watch that failed for good ends leadership
        finally:
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def _watch(self, prefix: str, revision: int) -> None:
        """Marks the world dirty on every change under `prefix` but the scheduler's own
        status keys; after a compaction, from the current revision on."""
        while True:
            try:
                async for event in self.client.watch(prefix, start_revision=revision):
                    revision = event.revision + 1
                    parsed = desired.parse_project_key(event.kv.key)
                    if parsed is None or parsed[1] != desired.STATUS:
                        self._dirty.set()
            except etcd.Compacted:
                revision = (await self.client.range(desired.LEADER))[0] + 1
                self._dirty.set()

    async def schedule(self, lease: int) -> float:
        """One pass; the seconds until a down node's grace period ends (inf: none pending)."""
        now = self.clock()
        grace = _grace((await self.client.get(keys.CONFIG)), self.grace)
        nodes = await membership.list_nodes(self.client)
        _, project_kvs = await self.client.range(desired.PROJECTS)
        _, assigned_kvs = await self.client.range(desired.ASSIGNMENTS)
        placed_nodes, wake = self._nodes(nodes, now, grace)
        records: dict[str, bytes] = {}
        statuses: dict[str, bytes] = {}
        for kv in project_kvs:
            parsed = desired.parse_project_key(kv.key)
            if parsed is not None:
                (statuses if parsed[1] else records)[parsed[0]] = kv.value
        existing = {kv.key: kv.value for kv in assigned_kvs}
        current: dict[str, dict[placement.Slot, str]] = {}
        for kv in assigned_kvs:
            found = desired.parse_assignment(kv.key)
            if found is not None:
                current.setdefault(found.project, {})[(found.service, found.slot)] = found.node
        wanted, status_puts, errors = self._decide(placed_nodes, records, statuses, current)
        after: dict[str, bytes] = {}
        for name, slots in wanted.items():
            value = desired.assignment_value(_generation(records.get(name))).encode()
            for (service, slot), node_id in slots.items():
                after[desired.assignment(node_id, name, service, slot)] = value
        for key, value in existing.items():
            # An unreadable project's replicas stay as they are until it is fixed or gone;
            # keys that are not assignments are not this scheduler's to remove.
            found = desired.parse_assignment(key)
            if found is None or (found.project in records and found.project not in wanted):
                after[key] = value
        status_deletes = [desired.project_status(n) for n in statuses if n not in records]
        puts, deletes = await self._write(lease, existing, after, status_puts, status_deletes)
        self.last = Pass(puts, deletes, errors)
        self.passes += 1
        if puts or deletes:
            log.info("scheduler.scheduled", puts=puts, deletes=deletes,
                     errors=sum(len(e) for e in errors.values()))
        return wake

    def _nodes(self, nodes: list[membership.Node], now: float, grace: float
               ) -> tuple[list[placement.Node], float]:
        """The nodes in placement's terms, and the seconds until the next grace ends."""
        placed, wake = [], math.inf
        known = {n.id for n in nodes}
        for gone in set(self._down_since) - known:
            del self._down_since[gone]
        for node in nodes:
            ready = node.status == membership.READY
            if ready:
                self._down_since.pop(node.id, None)
                holding = False
            else:
                left = self._down_since.setdefault(node.id, now) + grace - now
                holding = left > 0
                if holding:
                    wake = min(wake, left)
            placed.append(desired.to_placement(node, ready=ready, holding=holding))
        return placed, wake

    def _decide(self, nodes: list[placement.Node], records: Mapping[str, bytes],
                statuses: Mapping[str, bytes], current: Mapping[str, dict[placement.Slot, str]]
                ) -> tuple[dict[str, dict[placement.Slot, str]], dict[str, str],
                           dict[str, dict[str, str]]]:
        """Each readable project's assignments, the status values that changed, the errors."""
        placed = {name: dict(slots) for name, slots in current.items() if name in records}
        ports_of: dict[str, dict[str, tuple[str, ...]]] = {}
        projects: dict[str, desired.Project] = {}
        status_puts: dict[str, str] = {}
        errors: dict[str, dict[str, str]] = {}
        for name, value in sorted(records.items()):
            try:
                projects[name] = desired.read_project(name, value)
            except (ValueError, TypeError, AttributeError) as error:
                errors[name] = {"": f"project {name}: unreadable: {error}"}
                status_puts[name] = json.dumps({"generation": _generation(value),
                                                "errors": errors[name], "warnings": []})
                continue
            ports_of[name] = {s.name: s.ports for s in projects[name].services}
        wanted: dict[str, dict[placement.Slot, str]] = {}
        for name, project in projects.items():
            load = _load(placed, ports_of, excluding=name)
            result = placement.place(nodes, project.services, placed.get(name, {}), load=load)
            wanted[name] = placed[name] = dict(result.assignments)
            errors[name] = dict(result.errors)
            count = sum(s.replicas for s in project.services if s.mode == placement.REPLICATED)
            count += sum(1 for (service, _) in result.assignments
                         if any(s.name == service and s.mode == placement.GLOBAL
                                for s in project.services))
            status = desired.status_value(project.generation, _with_earlier_warnings(
                result, project.generation, statuses.get(name)), count)
            if statuses.get(name) != status.encode():
                status_puts[name] = status
        return wanted, status_puts, errors

    async def _write(self, lease: int, before: Mapping[str, bytes], after: Mapping[str, bytes],
                     status_puts: Mapping[str, str], status_deletes: list[str]
                     ) -> tuple[int, int]:
        """The difference, a replica's delete and put in one transaction (no moment with the
        slot on two nodes), each transaction only while the leader key is ours."""
        groups: dict[tuple[str, str, int], list[dict]] = {}
        puts = deletes = 0
        for key in sorted(set(before) - set(after)):
            groups.setdefault(_slot_of(key), []).append(etcd.delete_op(key))
            deletes += 1
        for key, value in sorted(after.items()):
            if before.get(key) != value:
                groups.setdefault(_slot_of(key), []).append(etcd.put_op(key, value))
                puts += 1
        batches: list[list[dict]] = [[]]
        for ops in groups.values():
            if len(batches[-1]) + len(ops) > MAX_OPS:
                batches.append([])
            batches[-1] += ops
        batches[-1] += [etcd.put_op(desired.project_status(name), value)
                        for name, value in sorted(status_puts.items())]
        batches[-1] += [etcd.delete_op(key) for key in status_deletes]
        guard = [etcd.compare(desired.LEADER, "lease", "=", lease)]
        for batch in batches:
            for start in range(0, len(batch), MAX_OPS):
                won, _ = await self.client.txn(guard, batch[start:start + MAX_OPS])
                if not won:
                    raise LostLeadership("the leader key is no longer this scheduler's")
        return puts, deletes


def _grace(config: etcd.KV | None, default: float) -> float:
    """The cluster's grace period when its config sets a valid one."""
    try:
        found = json.loads(config.value).get("scheduler_grace") if config else None
    except (ValueError, AttributeError):
        return default
    if isinstance(found, (int, float)) and not isinstance(found, bool) and found >= 0:
        return float(found)
    return default


def _slot_of(key: str) -> tuple[str, str, int]:
    found = desired.parse_assignment(key)
    return ("", key, 0) if found is None else (found.project, found.service, found.slot)


def _generation(value: bytes | None) -> int:
    try:
        return int(json.loads(value or b"{}").get("generation", 0))
    except (ValueError, TypeError, AttributeError):
        return 0


def _load(placed: Mapping[str, Mapping[placement.Slot, str]],
          ports_of: Mapping[str, Mapping[str, tuple[str, ...]]], *, excluding: str
          ) -> dict[str, placement.Load]:
    """What the other projects put on each node: containers and fixed host ports."""
    containers: dict[str, int] = {}
    ports: dict[str, set[str]] = {}
    for name, slots in placed.items():
        if name == excluding:
            continue
        for (service, _), node_id in slots.items():
            containers[node_id] = containers.get(node_id, 0) + 1
            ports.setdefault(node_id, set()).update(ports_of.get(name, {}).get(service, ()))
    return {n: placement.Load(containers.get(n, 0), frozenset(ports.get(n, ())))
            for n in set(containers) | set(ports)}


def _with_earlier_warnings(result: placement.Result, generation: int,
                           status: bytes | None) -> placement.Result:
    """A move's warning stays in the status for the generation it happened in."""
    try:
        earlier = json.loads(status or b"{}")
    except ValueError:
        earlier = {}
    if not isinstance(earlier, dict) or earlier.get("generation") != generation:
        return result
    warnings = [str(w) for w in earlier.get("warnings") or []]
    warnings += [w for w in result.warnings if w not in warnings]
    return placement.Result(result.assignments, result.errors, tuple(warnings))


async def _until_lost(lease: etcd.Lease, work: Awaitable[T]) -> T:
    """`work`, unless the lease is lost first: then it is cancelled and LostLeadership
    raised, so that a scheduler never acts on a lease that may be gone."""
    task = asyncio.ensure_future(work)
    lost = asyncio.ensure_future(lease.lost.wait())
    try:
        await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        lost.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if not task.done() or task.cancelled():
        raise LostLeadership("the leader lease was lost")
    return task.result()
