"""This host as a cluster node: its persistent id, its spec (created once, then admin-owned) and
its status under a lease that the agent keeps alive; and the node verbs' reads and edits.

A node is Ready while its status key exists: the key goes with the lease, a TTL after the
agent's last keepalive, so a dead host shows Down within the TTL. After a lost lease (an
etcd outage longer than the TTL) the agent registers again in one transaction, with whatever
else lives under its lease (`extra`: VTEPs and endpoints)."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import secrets
import socket
import string
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from reconciler.cluster import etcd, keys

log = structlog.get_logger(__name__)

TTL = 10  # seconds of the node lease: a dead host is Down this long after its last keepalive
ID_FILE = "node-id"
READY, DOWN = "ready", "down"
ROLES = ("worker", "manager")
AVAILABILITIES = ("active", "pause", "drain")
_ID_CHARS = string.ascii_lowercase + string.digits


class NodeError(Exception):
    """A node verb refused: an unknown or ambiguous node, a node that is not down."""


def node_id(root: Path) -> str:
    """This host's node id, made once and kept in the state root (0600): the same node across
    agent restarts, so its spec (labels) and its subnets stay its own."""
    path = Path(root) / ID_FILE
    try:
        found = path.read_text().strip()
    except FileNotFoundError:
        found = ""
    if keys.NODE_ID.match(found):
        return found
    made = "".join(secrets.choice(_ID_CHARS) for _ in range(25))  # as docker's node ids
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(made + "\n")
    os.chmod(path, 0o600)
    return made


@dataclass(frozen=True)
class Config:
    """How `pcompose agent --cluster ...` joins: etcd's endpoints and TLS files, the node's name
    and underlay address, its engine labels."""

    endpoints: tuple[str, ...]
    name: str
    address: str
    labels: tuple[tuple[str, str], ...] = ()
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    api: str = ""  # where peers reach this agent's API (agent --listen-tcp), if it serves one

    def client(self) -> etcd.Client:
        return etcd.Client(list(self.endpoints), ca=self.ca, cert=self.cert, key=self.key)


@dataclass(frozen=True)
class Node:
    """A node as `node ls` shows it: its spec and, while it is up, its status."""

    id: str
    hostname: str
    address: str
    status: str  # READY or DOWN
    availability: str
    role: str
    labels: tuple[tuple[str, str], ...]
    engine_labels: tuple[tuple[str, str], ...]
    platform: str = ""
    started: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "hostname": self.hostname, "address": self.address,
                "status": self.status, "availability": self.availability, "role": self.role,
                "labels": dict(self.labels), "engine_labels": dict(self.engine_labels),
                "platform": self.platform, "started": self.started}


def _spec(name: str) -> dict[str, Any]:
    return {"name": name, "role": "worker", "availability": "active", "labels": {}}


def _pairs(mapping: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(mapping, dict):
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in mapping.items()))


class Membership:
    """`await Membership(client, id, config).run()` for the agent's life: registers, keeps the
    lease, registers again after losing it. `extra` are callables giving more (key, value)
    pairs that live under the node lease and must come back with it."""

    def __init__(self, client: etcd.Client, node_id: str, config: Config, *,
                 ttl: int = TTL) -> None:
        self.client, self.id, self.config, self.ttl = client, node_id, config, ttl
        self.extra: list[Callable[[], Iterable[tuple[str, bytes | str]]]] = []
        self.registered = asyncio.Event()
        self.lease_id = 0
        self.started = time.time()

    def status(self) -> dict[str, Any]:
        return {"hostname": self.config.name, "address": self.config.address,
                "platform": f"{platform.system().lower()}/{platform.machine()}",
                "engine_labels": dict(self.config.labels), "started": self.started,
                "host": socket.gethostname(), "api": self.config.api}

    async def run(self) -> None:
        pause = 0.5
        while True:
            try:
                await self.client.create(keys.node_spec(self.id),
                                         json.dumps(_spec(self.config.name)))
                # Not revoked when the agent stops: a restarted agent takes its keys over
                # under a new lease before this one ends, and peers keep their routes to it.
                async with self.client.keep(self.ttl, revoke=False) as lease:
                    await self._register(lease.id)
                    pause = 0.5
                    await lease.lost.wait()
                self.registered.clear()
                log.warning("node.lease_lost", node=self.id, lease=self.lease_id)
            except etcd.EtcdError as error:
                self.registered.clear()
                log.warning("node.register_failed", node=self.id, error=str(error))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def _register(self, lease: int) -> None:
        """Status and every extra key under the new lease, in one transaction: peers see the
        node whole, never its status without its VTEPs."""
        puts = [etcd.put_op(keys.node_status(self.id), json.dumps(self.status()), lease=lease)]
        for source in self.extra:
            puts += [etcd.put_op(key, value, lease=lease) for key, value in source()]
        await self.client.txn([], puts)
        self.lease_id = lease
        self.registered.set()
        log.info("node.registered", node=self.id, name=self.config.name,
                 address=self.config.address, lease=lease)


async def list_nodes(client: etcd.Client) -> list[Node]:
    """Every node with a spec or a status, by hostname."""
    _, kvs = await client.range(keys.NODES)
    specs: dict[str, dict] = {}
    statuses: dict[str, dict] = {}
    for kv in kvs:
        parsed = keys.parse_node_key(kv.key)
        if parsed is None:
            continue
        try:
            value = kv.json()
        except ValueError:
            continue
        if isinstance(value, dict):
            {"spec": specs, "status": statuses}.get(parsed[1], {})[parsed[0]] = value
    nodes = []
    for node_id in sorted(set(specs) | set(statuses)):
        spec, status = specs.get(node_id, {}), statuses.get(node_id)
        up = status or {}
        nodes.append(Node(
            node_id, str(up.get("hostname") or spec.get("name", "")), str(up.get("address", "")),
            READY if status is not None else DOWN, str(spec.get("availability", "active")),
            str(spec.get("role", "worker")), _pairs(spec.get("labels")),
            _pairs(up.get("engine_labels")), str(up.get("platform", "")),
            float(up.get("started", 0.0))))
    return sorted(nodes, key=lambda n: (n.hostname, n.id))


def resolve(nodes: list[Node], ref: str) -> Node:
    """A node by id, hostname or a unique id prefix, as docker's node verbs take it."""
    for match in ([n for n in nodes if n.id == ref], [n for n in nodes if n.hostname == ref],
                  [n for n in nodes if n.id.startswith(ref)]):
        if len(match) == 1:
            return match[0]
        if len(match) > 1:
            raise NodeError(f"node {ref} is ambiguous ({len(match)} matches)")
    raise NodeError(f"node {ref} not found")


@dataclass(frozen=True)
class Update:
    label_add: tuple[tuple[str, str], ...] = ()
    label_rm: tuple[str, ...] = ()
    role: str | None = None
    availability: str | None = None


async def update_node(client: etcd.Client, ref: str, update: Update) -> Node:
    """Apply `update` to a node's spec, as a compare-and-swap on the spec's revision so that
    two admins' edits do not undo each other."""
    if update.role is not None and update.role not in ROLES:
        raise NodeError(f"invalid role {update.role!r}: one of {', '.join(ROLES)}")
    if update.availability is not None and update.availability not in AVAILABILITIES:
        raise NodeError(f"invalid availability {update.availability!r}: "
                        f"one of {', '.join(AVAILABILITIES)}")
    for _ in range(10):
        node = resolve(await list_nodes(client), ref)
        key = keys.node_spec(node.id)
        current = await client.get(key)
        spec = current.json() if current else _spec(node.hostname)
        labels = dict(spec.get("labels") or {})
        for name in update.label_rm:
            if name not in labels:
                raise NodeError(f"label {name} does not exist on node {node.hostname}")
            del labels[name]
        labels.update(dict(update.label_add))
        spec["labels"] = labels
        if update.role is not None:
            spec["role"] = update.role
        if update.availability is not None:
            spec["availability"] = update.availability
        revision = current.mod_revision if current else 0
        won, _ = await client.txn([etcd.compare(key, "mod", "=", revision)],
                                  [etcd.put_op(key, json.dumps(spec))])
        if won:
            return resolve(await list_nodes(client), node.id)
    raise NodeError(f"node {ref}: its spec kept changing; try again")


async def remove_node(client: etcd.Client, ref: str) -> Node:
    """Forget a node that is down: its spec and every key of it. A node that is up would
    register again at once: refused, as docker refuses `node rm` of an active node."""
    node = resolve(await list_nodes(client), ref)
    if node.status != DOWN:
        raise NodeError(f"node {node.hostname} ({node.id}) is not down and can't be removed: "
                        "stop its agent first")
    won, _ = await client.txn([etcd.compare(keys.node_status(node.id), "create", "=", 0)],
                              [etcd.delete_op(keys.node(node.id), prefix=True)])
    if not won:
        raise NodeError(f"node {node.hostname} ({node.id}) came back up: not removed")
    log.info("node.removed", node=node.id, hostname=node.hostname)
    return node
