"""What the runtime needs to know about one container, as frozen dataclasses (no pydantic here)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from runtime.cgroups import model as cgroups_model

DEFAULT_SHM_SIZE = 64 * 1024 * 1024
SHORT_ID = 12  # docker's short form of a container id


def new_id() -> str:
    """A container instance's id, as docker makes them: 64 random hex digits."""
    return secrets.token_hex(32)


@dataclass(frozen=True)
class ImageConfig:
    """The values of an image's config that shape a container (OCI image config names)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # "KEY=value"
    working_dir: str = ""
    user: str = ""
    stop_signal: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Mount:
    """A volume or bind mount: `source` is a host path the caller prepared; tmpfs has none."""

    target: str
    source: str = ""
    type: str = "bind"  # bind | tmpfs
    read_only: bool = False
    options: tuple[str, ...] = ()  # extra mount options, e.g. "size=64m" for tmpfs


@dataclass(frozen=True)
class Ulimit:
    name: str  # compose names: nofile, nproc, core, memlock...
    soft: int
    hard: int


@dataclass(frozen=True)
class Device:
    host_path: str
    container_path: str = ""
    permissions: str = "rwm"


@dataclass(frozen=True)
class Identity:
    """Who a container is, carried as OCI annotations so a new process can find it again."""

    project: str
    service: str
    replica: int = 1
    config_hash: str = ""
    image: str = ""
    oneoff: bool = False


@dataclass(frozen=True)
class ContainerConfig:
    """One container of a service, normalized: every compose key the runtime acts on.

    Namespace modes (`network`, `pid`, `ipc`, `uts`): "private" (a new namespace), "host"
    (none), or the absolute path of a namespace to join (`service:x` / `container:x` are
    resolved by the caller, e.g. with observe.namespace_path). ipc "shareable" is private.
    `network` "private" gives a new, empty network namespace ("none" means the same).
    """

    name: str
    identity: Identity
    rootfs: str
    # The instance's id (new_id()): runc's container id and the key of its state dirs; the
    # name stays the name users give. "" keys it by its name (a container made before ids).
    id: str = ""
    image: ImageConfig = ImageConfig()
    entrypoint: tuple[str, ...] | None = None  # None: the image's; () clears it
    command: tuple[str, ...] | None = None  # None: the image's CMD (unless entrypoint is set)
    environment: Mapping[str, str] = field(default_factory=dict)
    env_files: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    hostname: str = ""
    domainname: str = ""
    read_only: bool = False
    tmpfs: tuple[str, ...] = ()  # "/run" or "/run:size=64m,mode=1777"
    mounts: tuple[Mount, ...] = ()
    addresses: tuple[str, ...] = ()  # the container's own IPs, for its /etc/hosts line
    extra_hosts: tuple[tuple[str, str], ...] = ()  # (hostname, ip)
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    shm_size: int = DEFAULT_SHM_SIZE
    ulimits: tuple[Ulimit, ...] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    no_new_privileges: bool = False
    # security_opt seccomp: "" for the default profile, "unconfined", or a profile file's
    # absolute path (docker's format); apparmor: "" for docker-default, "unconfined" or a name.
    seccomp: str = ""
    apparmor: str = ""
    devices: tuple[Device, ...] = ()
    init: bool = False
    stop_signal: str = ""  # empty: the image's, else SIGTERM
    stop_grace_period: float = 10.0
    labels: Mapping[str, str] = field(default_factory=dict)
    resources: cgroups_model.Resources = cgroups_model.Resources()
    network: str = "private"
    pid: str = "private"
    ipc: str = "private"
    uts: str = "private"
    tty: bool = False
    stdin_open: bool = False  # conmon passes attached clients' input to the process (run -i)

    @property
    def cid(self) -> str:
        """What runc and the state dirs know the container by."""
        return self.id or self.name
