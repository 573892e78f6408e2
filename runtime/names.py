"""How pcompose names what it makes for a project, as docker compose names it: one place for
the rules every layer that names or recognizes a resource follows. Short Linux link names are
runtime/net/names.py's; the stack loader (reconciler.spec, which imports nothing of pcompose)
spells `<project>_<key>` and `<project>-<service>-<n>` itself, as a default and a check."""

from __future__ import annotations

import hashlib


def container(project: str, service: str, replica: int) -> str:
    """A service's replica: `<project>-<service>-<n>` (unless the service sets container_name)."""
    return f"{project}-{service}-{replica}"


def oneoff(project: str, service: str, suffix: str) -> str:
    """A `run` container: `<project>-<service>-run-<suffix>`."""
    return f"{project}-{service}-run-{suffix}"


def scoped(project: str, key: str) -> str:
    """A network or volume the stack declares without a name: `<project>_<key>`."""
    return f"{project}_{key}"


def image(project: str, service: str) -> str:
    """The image built for a service that names none: `<project>-<service>`."""
    return f"{project}-{service}"


def anonymous_volume(container_name: str, target: str) -> str:
    """A container's anonymous volume at `target`: stable across its recreations."""
    return f"{anonymous_prefix(container_name)}{hashlib.sha256(target.encode()).hexdigest()[:12]}"


def anonymous_prefix(container_name: str) -> str:
    """What every anonymous volume of the container called `container_name` begins with."""
    return f"{container_name}_anon_"


def of_project(project: str, container_name: str) -> bool:
    """Whether a container's name is one of the project's own kind (replicas and `run`)."""
    return container_name.startswith(f"{project}-")
