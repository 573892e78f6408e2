"""Desired and observed state as frozen values: what the diff compares, nothing more."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from runtime import names as naming


class Condition(str, enum.Enum):
    """A `depends_on` condition of the Compose specification."""

    STARTED = "service_started"
    HEALTHY = "service_healthy"
    COMPLETED = "service_completed_successfully"


@dataclass(frozen=True)
class Dependency:
    """One `depends_on` entry of a service."""

    service: str
    condition: Condition = Condition.STARTED
    required: bool = True
    restart: bool = False


@dataclass(frozen=True)
class RestartPolicy:
    """`restart:` of a service: no, always, on-failure[:max_retries], unless-stopped."""

    name: str = "no"
    max_retries: int = 0  # 0: no limit, as in docker

    NAMES = ("no", "always", "on-failure", "unless-stopped")

    @classmethod
    def parse(cls, text: str) -> RestartPolicy:
        name, _, count = text.partition(":")
        if name not in cls.NAMES or (count and (name != "on-failure" or not count.isdigit())):
            raise ValueError(f"invalid restart policy {text!r}: expected one of "
                             "no, always, on-failure[:n], unless-stopped")
        return cls(name, int(count or 0))

    def __str__(self) -> str:
        return f"{self.name}:{self.max_retries}" if self.max_retries else self.name


@dataclass(frozen=True)
class RestartCount:
    """What a start leaves beside its container for the decision at its next exit: the
    restarts in a row so far and the backoff delay reached (docker's restart manager)."""

    count: int = 0
    delay: float = 0.0


@dataclass(frozen=True)
class Limits:
    """Resource limits a container can change in place (runc update), without a restart."""

    memory: int | None = None  # bytes
    memory_reservation: int | None = None
    memory_swap: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset: str | None = None
    pids: int | None = None
    cpu_period: int | None = None  # microseconds, as written (None: the kernel's default)

    def __str__(self) -> str:
        parts = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                 if getattr(self, f.name) is not None]
        return " ".join(parts) or "none"


@dataclass(frozen=True)
class DesiredNetwork:
    """A network of the project: `name` is the real one (`<project>_<key>` or `name:`)."""

    key: str
    name: str
    config_hash: str = ""
    external: bool = False


@dataclass(frozen=True)
class DesiredVolume:
    """A named volume of the project; anonymous volumes belong to their container."""

    key: str
    name: str
    config_hash: str = ""
    external: bool = False


@dataclass(frozen=True)
class DesiredService:
    """A service as the reconciler needs it; `config_hash` already excludes scale, limits,
    depends_on and the other keys that must not force a recreate. `limits` are compared to
    the container's stored ones: a change of only those is applied in place."""

    project: str
    name: str
    config_hash: str
    image: str
    image_id: str | None = None  # None: not resolved yet, so not compared
    replicas: int = 1
    networks: tuple[str, ...] = ()  # network keys
    volumes: tuple[str, ...] = ()  # named volume keys
    depends_on: tuple[Dependency, ...] = ()
    restart: RestartPolicy = RestartPolicy()
    limits: Limits = Limits()
    container_name: str | None = None
    has_healthcheck: bool = False

    def container_names(self, replicas: int) -> tuple[str, ...]:
        if self.container_name:
            return (self.container_name,)
        return tuple(naming.container(self.project, self.name, n) for n in range(1, replicas + 1))


@dataclass(frozen=True)
class DesiredContainer:
    """One replica of a desired service."""

    service: DesiredService
    replica: int
    name: str
    start: bool = True  # False: made and left created (`create`), until `start` or `up`

    @property
    def resource(self) -> str:
        return f"service:{self.service.name}:{self.replica}"


@dataclass(frozen=True)
class DesiredState:
    """Everything one project should be."""

    project: str
    services: tuple[DesiredService, ...] = ()
    networks: tuple[DesiredNetwork, ...] = ()
    volumes: tuple[DesiredVolume, ...] = ()

    def service(self, name: str) -> DesiredService | None:
        return next((s for s in self.services if s.name == name), None)


class ContainerState(str, enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    EXITED = "exited"


@dataclass(frozen=True)
class ObservedContainer:
    """A container as read back from the machine (runc state, annotations, exit files)."""

    name: str
    project: str
    service: str
    replica: int
    config_hash: str
    image_id: str | None
    state: ContainerState
    exit_code: int | None = None
    health: str | None = None  # starting, healthy, unhealthy, or None without a healthcheck
    limits: Limits = Limits()
    networks: tuple[str, ...] | None = None  # real names; None: not observed, not compared
    volumes: tuple[str, ...] | None = None  # named volumes' real names, as networks
    ran_for: float = 0.0  # seconds between its last start and its exit
    # When it exited, on the clock of ObservedState.observed_at (conmon's exit file mtime);
    # without both, a restart is not delayed.
    finished_at: float | None = None
    restart_count: int = 0
    restart_delay: float = 0.0  # the delay of its last restart (docker's backoff state)
    stopped_by_user: bool = False
    # The stop was asked of an agent before this one: as after dockerd's restart, `always`
    # runs it again (`unless-stopped` does not).
    stopped_before_agent: bool = False
    # False: its process is there but its monitor (conmon) is gone: nothing takes its output
    # or records its exit, so it is made again.
    monitored: bool = True
    # The runtime's id of this instance (new at each making); "": a plan made without one.
    id: str = ""
    # What the kernel holds that differs from what was made for it ("" when nothing): a veth
    # of a running container gone or off its bridge, and a cgroup limit changed by hand.
    # Both are repaired in place, never by a restart.
    net_drift: str = ""
    limits_drift: str = ""

    @property
    def resource(self) -> str:
        return f"service:{self.service}:{self.replica}"


@dataclass(frozen=True)
class ObservedNetwork:
    name: str
    project: str
    key: str
    config_hash: str = ""
    # What the kernel shows of its bridge that differs from what the agent made ("" when
    # nothing): bridge missing, an address or the MTU changed.
    drift: str = ""


@dataclass(frozen=True)
class ObservedVolume:
    name: str
    project: str
    key: str
    config_hash: str = ""


@dataclass(frozen=True)
class ObservedState:
    """What one observation of the machine found for a project."""

    containers: tuple[ObservedContainer, ...] = ()
    networks: tuple[ObservedNetwork, ...] = ()
    volumes: tuple[ObservedVolume, ...] = ()
    observed_at: float | None = None  # when it was read; with finished_at, what is left of a delay
    # The agent's nft table against what it last applied ("" when the same): missing, or a
    # rule, chain or map element changed by hand.
    rules_drift: str = ""


@dataclass(frozen=True)
class DiffOptions:
    """The `up` flags that change decisions."""

    force_recreate: bool = False
    no_recreate: bool = False
    remove_orphans: bool = False
    remove_volumes: bool = False  # with remove_orphans: `down -v`
    scale: tuple[tuple[str, int], ...] = ()  # (service, replicas) from --scale
    start_stopped: bool = False  # an explicit `up`: start what is stopped, whatever its policy
    # When that `up` was submitted: a container that exited since has run for it already, and
    # is left to its restart policy (a pass retried after a failure does not rerun a job).
    submitted_at: float = 0.0
    # `create`: make what is missing, start nothing that is not running; what it makes stays
    # created until `start` or `up`.
    no_start: bool = False
    # `rm`: the replicas (`service:web:2`) a user removed, which the loop does not make again
    # (and removes, should a pass that looked before make one) until a submission asks for
    # their service again.
    removed: tuple[str, ...] = ()
    # `up -t`: the grace period of the containers this submission stops to remove or
    # recreate them; None: each container's own stop_grace_period. It decides nothing and
    # travels with the submission only so that the steps find it.
    stop_timeout: float | None = None
    # Whether an image ID that differs from the one a container was made from recreates it:
    # only on the first pass of a submission (`up`, `create`), as docker compose looks at
    # images only when asked to; a resync never recreates because a tag moved. The loop
    # sets it for each pass; it is not stored.
    image_check: bool = False

    def replicas(self, service: DesiredService) -> int:
        return dict(self.scale).get(service.name, service.replicas)
