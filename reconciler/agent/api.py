"""What travels over the agent's socket: paths, the project summary and the version, as JSON."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from reconciler.agent import wire

AgentUnavailable = wire.AgentUnavailable
ApiError = wire.ApiError

SOCKET_NAME = wire.SOCKET_NAME
API_VERSION = "v1"

# docker compose's rule for project names given explicitly.
PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def socket_path(run_dir: Path) -> Path:
    return Path(run_dir) / SOCKET_NAME


def check_project_name(name: str) -> None:
    if not PROJECT_NAME.match(name):
        raise ValueError(f'invalid project name "{name}": must consist only of lowercase '
                         "alphanumeric characters, hyphens, and underscores as well as "
                         "start with a letter or number")


@dataclass(frozen=True)
class ProjectInfo:
    """A project as `GET /v1/projects` lists it (the stack itself is left out)."""

    name: str
    status: str
    config_files: tuple[str, ...]
    working_dir: str
    generation: int
    applied_generation: int
    updated_at: float
    reason: str = ""

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"config_files": list(self.config_files)}

    @classmethod
    def from_json(cls, data: dict) -> ProjectInfo:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
                   | {"config_files": tuple(data["config_files"])})


@dataclass(frozen=True)
class VersionInfo:
    version: str
    api: str
    pid: int
    root: str
    run_dir: str
    reconciling: bool  # False until a runtime is plugged into the agent

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> VersionInfo:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})
