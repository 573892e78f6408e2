"""The cluster's desired state in etcd: projects, their status and the per-node assignments,
their keys and values, read into placement's terms; pure, no I/O.

    cluster/leader                                   the scheduler's, under its lease
    projects/<name>                                  {"name", "generation", "stack": normalized}
    projects/<name>/status                           the scheduler's verdict: errors, warnings
    assignments/<node>/<project>/<service>/<slot>    {"generation"}: a replica a node runs

(keys.py names the layout of nodes and networks; these are the scheduler's.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.cluster import keys, membership, placement

LEADER = keys.PREFIX + "cluster/leader"
PROJECTS = keys.PREFIX + "projects/"
ASSIGNMENTS = keys.PREFIX + "assignments/"
STATUS = "status"

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # compose's project and service names


def project(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"invalid project name {name!r}")
    return PROJECTS + name


def project_status(name: str) -> str:
    return project(name) + "/" + STATUS


def node_assignments(node_id: str) -> str:
    """The prefix one agent watches."""
    return keys.node(node_id).replace(keys.NODES, ASSIGNMENTS, 1)


def assignment(node_id: str, project_name: str, service: str, slot: int) -> str:
    return f"{node_assignments(node_id)}{project_name}/{service}/{slot}"


@dataclass(frozen=True)
class Assignment:
    node: str
    project: str
    service: str
    slot: int


def parse_assignment(key: str) -> Assignment | None:
    if not key.startswith(ASSIGNMENTS):
        return None
    parts = key[len(ASSIGNMENTS):].split("/")
    if len(parts) != 4 or not parts[3].isdigit() or not keys.NODE_ID.match(parts[0]):
        return None
    return Assignment(parts[0], parts[1], parts[2], int(parts[3]))


def parse_project_key(key: str) -> tuple[str, str] | None:
    """(project, "" for its record or "status"), None for any other key."""
    if not key.startswith(PROJECTS):
        return None
    name, _, part = key[len(PROJECTS):].partition("/")
    if not _NAME.match(name) or part not in ("", STATUS):
        return None
    return name, part


@dataclass(frozen=True)
class Project:
    name: str
    generation: int
    services: tuple[placement.Service, ...]


def record(name: str, generation: int, stack: Mapping[str, Any],
           submission: Mapping[str, Any] | None = None) -> str:
    """The value `up` stores for a project: the normalized stack as `config --format json`
    prints it (the services it runs, with their replicas), its generation, and the agent's
    submission it came from, which each agent runs its own replicas of."""
    value: dict[str, Any] = {"name": name, "generation": generation, "stack": stack}
    if submission is not None:
        value["submission"] = submission
    return json.dumps(value, sort_keys=True)


def submission_of(value: bytes) -> dict[str, Any] | None:
    """The submission in a project's record; None for a record without one."""
    try:
        data = json.loads(value)
    except ValueError:
        return None
    found = data.get("submission") if isinstance(data, dict) else None
    return found if isinstance(found, dict) and isinstance(found.get("stack"), dict) else None


def read_project(name: str, value: bytes) -> Project:
    """A project's record in placement's terms; ValueError for one that is not ours."""
    data = json.loads(value)
    if not isinstance(data, dict) or not isinstance(data.get("stack"), dict):
        raise ValueError(f"project {name}: not a project record")
    services = data["stack"].get("services") or {}
    if not isinstance(services, dict):
        raise ValueError(f"project {name}: services is not a mapping")
    return Project(name, int(data.get("generation", 0)),
                   tuple(service_of(str(k), v) for k, v in sorted(services.items())
                         if isinstance(v, dict)))


def service_of(name: str, service: Mapping[str, Any]) -> placement.Service:
    """What placement needs of one normalized service."""
    deploy = service.get("deploy") or {}
    where = deploy.get("placement") or {}
    mode = str(deploy.get("mode") or placement.REPLICATED)
    replicas = service.get("scale")
    if replicas is None:
        replicas = deploy.get("replicas")
    ports = []
    for port in service.get("ports") or []:
        published = str(port.get("published") or "") if isinstance(port, dict) else ""
        if published.isdigit():  # a range or no port: the host picks, nothing to collide
            ports.append(f"{published}/{port.get('protocol') or 'tcp'}")
    volumes = [str(v["source"]) for v in service.get("volumes") or []
               if isinstance(v, dict) and v.get("type") == "volume" and v.get("source")]
    return placement.Service(
        name, int(1 if replicas is None else replicas), mode,
        tuple(str(c) for c in where.get("constraints") or []),
        tuple(str(p["spread"]) for p in where.get("preferences") or []
              if isinstance(p, dict) and p.get("spread")),
        int(where.get("max_replicas_per_node") or 0), tuple(sorted(set(ports))),
        tuple(sorted(set(volumes))))


def assignment_value(generation: int) -> str:
    return json.dumps({"generation": generation})


def status_value(generation: int, result: placement.Result, wanted: int) -> str:
    """What `up` and `ps` show of a project's placement: its errors by service, warnings."""
    return json.dumps({"generation": generation, "errors": dict(sorted(result.errors.items())),
                       "warnings": list(result.warnings), "placed": len(result.assignments),
                       "wanted": wanted}, sort_keys=True)


def to_placement(node: membership.Node, *, ready: bool, holding: bool) -> placement.Node:
    """A membership.Node in placement's terms (`holding`: down, inside its grace period)."""
    os_name, _, arch = str(node.platform).partition("/")
    return placement.Node(node.id, node.hostname, node.role, node.address,
                          os_name or "linux", arch or "x86_64", tuple(node.labels),
                          tuple(node.engine_labels), node.availability, ready, holding)
