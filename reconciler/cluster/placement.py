"""Where each replica runs: swarm's placement grammar, spread and limits, decided without I/O.

`place(nodes, services, current)` keeps every replica that may stay where it is and puts the
rest on the best node: the one that meets the service's constraints, is active and ready, has
the service's fixed host ports free and is under `max_replicas_per_node`; among those, the
`spread` preferences first (the label value with the fewest replicas of the service), then
the node with the fewest replicas of the service, then the one with the fewest containers.
Nothing is rebalanced: a replica moves only when its node is drained, down past its grace
period, no longer meets the constraints, or it collides with a port or a limit.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

ACTIVE, PAUSE, DRAIN = "active", "pause", "drain"
REPLICATED, GLOBAL = "replicated", "global"

# swarm's constraint syntax: a key, == or !=, a value (docker/swarmkit manager/constraint).
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9\-_.]*)\s*(==|!=)\s*(.*?)\s*$")
_FIXED_KEYS = ("node.id", "node.hostname", "node.role", "node.ip", "node.platform.os",
               "node.platform.arch")
_LABEL_PREFIXES = ("node.labels.", "engine.labels.")
# uname's machine names and the OCI ones a compose file may use mean the same CPU.
_ARCH_ALIASES = {"amd64": "x86_64", "x86-64": "x86_64", "arm64": "aarch64",
                 "armhf": "armv7l", "386": "i686"}


class PlacementError(Exception):
    """A service's placement can't be honoured: an unknown key, a malformed constraint."""


@dataclass(frozen=True)
class Node:
    """A node as placement sees it. `ready`: its status lease exists. `holding`: it is not
    ready but still inside its grace period, so it keeps its replicas and gets no new ones."""

    id: str
    hostname: str = ""
    role: str = "worker"
    ip: str = ""
    os: str = "linux"
    arch: str = "x86_64"
    labels: tuple[tuple[str, str], ...] = ()
    engine_labels: tuple[tuple[str, str], ...] = ()
    availability: str = ACTIVE
    ready: bool = True
    holding: bool = False


@dataclass(frozen=True)
class Service:
    """A service's wishes. `ports`: its fixed published host ports ("8080/tcp"); `volumes`:
    the named local volumes it mounts."""

    name: str
    replicas: int = 1
    mode: str = REPLICATED
    constraints: tuple[str, ...] = ()
    spread: tuple[str, ...] = ()
    max_per_node: int = 0  # 0: no limit, as swarm
    ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Load:
    """What a node runs besides the services being placed (other projects)."""

    containers: int = 0
    ports: frozenset[str] = frozenset()


Slot = tuple[str, int]  # (service, slot number from 1)


@dataclass(frozen=True)
class Result:
    """`assignments` of every replica that could be placed; `errors` by service, saying why
    some or all of its replicas have no node; `warnings` of what a move costs."""

    assignments: Mapping[Slot, str]
    errors: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Constraint:
    key: str
    equal: bool
    value: str

    def __str__(self) -> str:
        return f"{self.key}{'==' if self.equal else '!='}{self.value}"


def parse(service: str, text: str) -> Constraint:
    """One constraint of `service`, checked: the key must be one swarm knows."""
    match = _CONSTRAINT.match(text)
    if match is None:
        raise PlacementError(f"service {service}: invalid constraint {text!r}: "
                             "expected KEY==VALUE or KEY!=VALUE")
    key, op, value = match.groups()
    lowered = key.lower()
    if lowered not in _FIXED_KEYS and not any(
            lowered.startswith(p) and len(key) > len(p) for p in _LABEL_PREFIXES):
        raise PlacementError(
            f"service {service}: unknown constraint key {key!r} in {text.strip()!r}: one of "
            f"{', '.join(_FIXED_KEYS)}, node.labels.<label>, engine.labels.<label>")
    if not value:
        raise PlacementError(f"service {service}: constraint {text.strip()!r} has no value")
    if lowered == "node.ip":
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise PlacementError(f"service {service}: constraint {text.strip()!r}: "
                                 f"{value!r} is not an address or a CIDR") from None
    # Label names keep their case (labels are case-sensitive keys); the fixed keys don't.
    for prefix in _LABEL_PREFIXES:
        if lowered.startswith(prefix):
            key = prefix + key[len(prefix):]
            break
    else:
        key = lowered
    return Constraint(key, op == "==", value)


def validate(services: Iterable[Service]) -> dict[str, str]:
    """The grammar errors of each service's constraints and preferences, by service."""
    errors: dict[str, str] = {}
    for service in services:
        try:
            _constraints(service)
        except PlacementError as error:
            errors[service.name] = str(error)
    return errors


def impossible(nodes: Iterable[Node], services: Iterable[Service]) -> dict[str, str]:
    """What fails an `up` at once, by service: a constraint or preference that does not
    parse, or constraints that no node of the cluster meets, whatever its state (a down
    or drained node may come back; a typo or a missing label will not)."""
    known = sorted(nodes, key=lambda n: n.id)
    errors: dict[str, str] = {}
    for service in services:
        try:
            constraints = _constraints(service)
        except PlacementError as error:
            errors[service.name] = str(error)
            continue
        reasons = {n.id: unmet(constraints, n) for n in known}
        if constraints and not any(reason is None for reason in reasons.values()):
            errors[service.name] = _no_node(service, {n.id: n for n in known}, reasons)
    return errors


def _constraints(service: Service) -> tuple[Constraint, ...]:
    for spread in service.spread:
        if not any(spread.startswith(p) and len(spread) > len(p) for p in _LABEL_PREFIXES):
            raise PlacementError(f"service {service.name}: invalid spread preference "
                                 f"{spread!r}: expected node.labels.<label> or "
                                 "engine.labels.<label>")
    if service.mode not in (REPLICATED, GLOBAL):
        raise PlacementError(f"service {service.name}: invalid deploy mode {service.mode!r}")
    return tuple(parse(service.name, text) for text in service.constraints)


def _actual(node: Node, key: str) -> str | None:
    """The node's value of a constraint key; None for a label it does not have."""
    if key.startswith("node.labels."):
        return dict(node.labels).get(key[len("node.labels."):])
    if key.startswith("engine.labels."):
        return dict(node.engine_labels).get(key[len("engine.labels."):])
    return {"node.id": node.id, "node.hostname": node.hostname, "node.role": node.role,
            "node.ip": node.ip, "node.platform.os": node.os,
            "node.platform.arch": node.arch}[key]


def _matches(constraint: Constraint, node: Node) -> bool:
    actual = _actual(node, constraint.key)
    if actual is None:  # swarm: a missing label equals nothing and differs from everything
        return not constraint.equal
    if constraint.key == "node.ip":
        try:
            found = ipaddress.ip_address(actual) in ipaddress.ip_network(constraint.value,
                                                                         strict=False)
        except ValueError:
            found = False
    elif constraint.key == "node.platform.arch":
        found = (_ARCH_ALIASES.get(actual.lower(), actual.lower())
                 == _ARCH_ALIASES.get(constraint.value.lower(), constraint.value.lower()))
    else:
        found = actual.lower() == constraint.value.lower()
    return found == constraint.equal


def unmet(constraints: Iterable[Constraint], node: Node) -> str | None:
    """Why `node` fails the constraints (the first that fails), None when it meets them."""
    for constraint in constraints:
        if not _matches(constraint, node):
            actual = _actual(node, constraint.key)
            shown = "not set" if actual is None else f"is {actual!r}"
            return f"constraint {constraint} not met ({constraint.key} {shown})"
    return None


class _Board:
    """The assignments being built and the counts the choices read."""

    def __init__(self, nodes: Iterable[Node], load: Mapping[str, Load]) -> None:
        self.containers = {n.id: load.get(n.id, Load()).containers for n in nodes}
        self.ports = {n.id: set(load.get(n.id, Load()).ports) for n in nodes}
        self.per_service: dict[tuple[str, str], int] = {}
        self.assignments: dict[Slot, str] = {}

    def fits(self, service: Service, node_id: str) -> str | None:
        """Why one more replica of `service` can't go on the node now, None when it can."""
        taken = [p for p in service.ports if p in self.ports[node_id]]
        if taken:
            return f"host port {taken[0]} already published there"
        count = self.per_service.get((service.name, node_id), 0)
        if service.max_per_node and count >= service.max_per_node:
            return f"max_replicas_per_node {service.max_per_node} reached"
        if service.mode == GLOBAL and count:
            return "runs its replica already"
        return None

    def put(self, service: Service, slot: int, node_id: str) -> None:
        self.assignments[(service.name, slot)] = node_id
        self.containers[node_id] += 1
        self.ports[node_id].update(service.ports)
        key = (service.name, node_id)
        self.per_service[key] = self.per_service.get(key, 0) + 1


def _closed(node: Node) -> str | None:
    """Why a node takes no new replica at all."""
    if not node.ready:
        return "down"
    if node.availability == DRAIN:
        return "drained"
    if node.availability == PAUSE:
        return "paused"
    return None


def _keeps(node: Node | None) -> bool:
    """Whether replicas already on the node may stay there."""
    return (node is not None and (node.ready or node.holding)
            and node.availability != DRAIN)


def place(nodes: Iterable[Node], services: Iterable[Service], current: Mapping[Slot, str],
          *, load: Mapping[str, Load] | None = None) -> Result:
    """Every replica's node, keeping `current` where it may stay (see the module's doc)."""
    by_id = {n.id: n for n in sorted(nodes, key=lambda n: n.id)}
    board = _Board(by_id.values(), load or {})
    errors: dict[str, str] = {}
    warnings: list[str] = []
    wanted: list[tuple[Service, tuple[Constraint, ...]]] = []
    for service in sorted(services, key=lambda s: (s.mode != GLOBAL, s.name)):
        try:
            wanted.append((service, _constraints(service)))
        except PlacementError as error:
            errors[service.name] = str(error)
    # Keep first, across every service: a replica that may stay is never displaced by a
    # new one of another service wanting its port.
    for service, constraints in wanted:
        slots = sorted(slot for (name, slot) in current if name == service.name)
        if service.mode == REPLICATED:
            slots = [slot for slot in slots if slot <= service.replicas]
        for slot in slots:
            node = by_id.get(current[(service.name, slot)])
            if (_keeps(node) and node is not None and unmet(constraints, node) is None
                    and board.fits(service, node.id) is None):
                board.put(service, slot, node.id)
    for service, constraints in wanted:
        reasons = {n.id: _closed(n) or unmet(constraints, n) for n in by_id.values()}
        hopeless = impossible(by_id.values(), [service])
        if hopeless:
            errors[service.name] = hopeless[service.name]
        elif service.mode == GLOBAL:
            _place_global(service, by_id, reasons, board)
        else:
            missing = _place_replicated(service, by_id, reasons, board)
            if missing is not None:
                placed = sum(1 for (name, _) in board.assignments if name == service.name)
                errors[service.name] = _no_node(service, by_id, missing,
                                                count=service.replicas - placed)
        warnings += _volume_warnings(service, current, board, by_id)
    return Result(dict(board.assignments), errors, tuple(warnings))


def _place_replicated(service: Service, nodes: Mapping[str, Node],
                      reasons: Mapping[str, str | None],
                      board: _Board) -> dict[str, str | None] | None:
    """Places the service's unassigned slots; the reasons per node of the first that found
    no node (None when every slot found one)."""
    open_nodes = [n for n in nodes.values() if reasons[n.id] is None]
    # Each node's value of each spread label (a node without it: the empty value, as swarm
    # groups them) and the replicas per value, kept up to date as replicas land.
    groups = {n.id: tuple(_actual(n, p) or "" for p in service.spread) for n in nodes.values()}
    spread: list[dict[str, int]] = [{} for _ in service.spread]
    for node in nodes.values():
        count = board.per_service.get((service.name, node.id), 0)
        for level, value in enumerate(groups[node.id]):
            spread[level][value] = spread[level].get(value, 0) + count
    for slot in range(1, service.replicas + 1):
        if (service.name, slot) in board.assignments:
            continue
        best: tuple[tuple, str] | None = None
        for node in open_nodes:
            if board.fits(service, node.id) is not None:
                continue
            score = (tuple(spread[level].get(value, 0)
                           for level, value in enumerate(groups[node.id])),
                     board.per_service.get((service.name, node.id), 0),
                     board.containers[node.id], node.hostname, node.id)
            if best is None or score < best[0]:
                best = (score, node.id)
        if best is None:
            return {n.id: reasons[n.id] or board.fits(service, n.id) for n in nodes.values()}
        board.put(service, slot, best[1])
        for level, value in enumerate(groups[best[1]]):
            spread[level][value] = spread[level].get(value, 0) + 1
    return None


def _place_global(service: Service, nodes: Mapping[str, Node],
                  reasons: Mapping[str, str | None], board: _Board) -> None:
    """One replica on every open node that has none, in the smallest free slot."""
    used = {slot for (name, slot) in board.assignments if name == service.name}
    free = (n for n in range(1, len(used) + len(nodes) + 2) if n not in used)
    for node in nodes.values():
        if reasons[node.id] is None and board.fits(service, node.id) is None:
            board.put(service, next(free), node.id)


def _no_node(service: Service, nodes: Mapping[str, Node], reasons: Mapping[str, str | None],
             *, count: int | None = None) -> str:
    what = (f"{count} of {service.replicas} replicas can't be placed" if count is not None
            else "no node meets its constraints")
    if not nodes:
        return f"service {service.name}: {what}: the cluster has no nodes"
    why = "; ".join(f"{nodes[i].hostname or i}: {reasons[i] or 'no room'}" for i in nodes)
    return f"service {service.name}: {what} ({why})"


def _volume_warnings(service: Service, current: Mapping[Slot, str], board: _Board,
                     nodes: Mapping[str, Node]) -> list[str]:
    """A replica with named local volumes that moved starts with them empty: say so."""
    if not service.volumes:
        return []
    warnings = []
    for (name, slot), before in sorted(current.items()):
        after = board.assignments.get((name, slot))
        if name == service.name and after is not None and after != before:
            old = nodes.get(before)
            warnings.append(
                f"service {service.name} replica {slot} moved from "
                f"{old.hostname if old else before} to {nodes[after].hostname or after}: its "
                f"volumes {', '.join(service.volumes)} start empty there")
    return warnings


def moves(before: Mapping[Slot, str], after: Mapping[Slot, str]) -> int:
    """How many replicas a new placement starts or moves (what a good placement keeps low)."""
    return sum(1 for slot, node in after.items() if before.get(slot) != node)
