"""The Stack: every top-level element and service attribute of the Compose schema, long syntax only.

The loader turns short syntax into long syntax before these models see the data, so what a
consumer reads here has one shape per attribute (ports, volumes, depends_on, environment...).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, StringConstraints, field_validator

from reconciler.spec import modelbase as mb


class ServicePort(mb.Spec):
    name: str | None = None
    mode: str = "ingress"
    host_ip: str | None = None
    target: mb.Port
    published: mb.PublishedPort | None = None
    protocol: str = "tcp"
    app_protocol: str | None = None


class BindOptions(mb.Spec):
    propagation: str | None = None
    create_host_path: bool | None = None
    recursive: Literal["enabled", "disabled", "writable", "readonly"] | None = None
    selinux: Literal["z", "Z"] | None = None


class VolumeOptions(mb.Spec):
    labels: mb.StrMap = Field(default_factory=dict)
    nocopy: bool | None = None
    subpath: str | None = None


class TmpfsOptions(mb.Spec):
    size: mb.Bytes | None = None
    mode: mb.FileMode | None = None


class ImageOptions(mb.Spec):
    subpath: str | None = None


class ServiceVolume(mb.Spec):
    type: Literal["bind", "volume", "tmpfs", "cluster", "npipe", "image"]
    source: str | None = None
    target: str | None = None
    read_only: bool | None = None
    consistency: str | None = None
    bind: BindOptions | None = None
    volume: VolumeOptions | None = None
    tmpfs: TmpfsOptions | None = None
    image: ImageOptions | None = None


class DependsOn(mb.Spec):
    condition: Literal["service_started", "service_healthy", "service_completed_successfully"]
    restart: bool = False
    required: StrictBool = True


class ServiceNetwork(mb.Spec):
    aliases: list[str] = Field(default_factory=list)
    interface_name: str | None = None
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    link_local_ips: list[str] = Field(default_factory=list)
    mac_address: str | None = None
    driver_opts: mb.DriverOpts = Field(default_factory=dict)
    priority: float | None = None
    gw_priority: float | None = None


class Healthcheck(mb.Spec):
    disable: bool | None = None
    test: list[str] | None = None
    interval: mb.Duration | None = None
    timeout: mb.Duration | None = None
    retries: int | None = None
    start_period: mb.Duration | None = None
    start_interval: mb.Duration | None = None


class EnvFile(mb.Spec):
    path: str
    required: bool = True
    format: str | None = None


class Logging(mb.Spec):
    driver: str | None = None
    options: mb.StrMap = Field(default_factory=dict)


class Build(mb.Spec):
    context: str | None = None
    dockerfile: str | None = None
    dockerfile_inline: str | None = None
    entitlements: list[str] = Field(default_factory=list)
    args: mb.StrMap = Field(default_factory=dict)
    ssh: mb.StrMap = Field(default_factory=dict)
    labels: mb.StrMap = Field(default_factory=dict)
    cache_from: list[str] = Field(default_factory=list)
    cache_to: list[str] = Field(default_factory=list)
    no_cache: bool | None = None
    no_cache_filter: list[str] = Field(default_factory=list)
    additional_contexts: mb.StrMap = Field(default_factory=dict)
    network: str | None = None
    provenance: bool | str | None = None
    sbom: bool | str | None = None
    pull: bool | None = None
    target: str | None = None
    shm_size: mb.Bytes | None = None
    extra_hosts: dict[str, list[str]] = Field(default_factory=dict)
    isolation: str | None = None
    privileged: bool | None = None
    secrets: list[mb.ServiceSecret] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    ulimits: dict[str, mb.Ulimit] = Field(default_factory=dict)
    platforms: list[str] = Field(default_factory=list)


class Device(mb.Spec):
    source: str
    target: str | None = None
    permissions: str | None = None


class Limits(mb.Spec):
    cpus: Annotated[float, Field(ge=0)] | None = None
    memory: mb.Bytes | None = None
    pids: int | None = None


class DiscreteResource(mb.Spec):
    kind: str | None = None
    value: float | None = None


class GenericResource(mb.Spec):
    discrete_resource_spec: DiscreteResource | None = None


class ReservedDevice(mb.DeviceRequest):
    capabilities: list[str]  # required here, unlike in `gpus`


class Reservations(mb.Spec):
    cpus: Annotated[float, Field(ge=0)] | None = None
    memory: mb.Bytes | None = None
    generic_resources: list[GenericResource] = Field(default_factory=list)
    devices: list[ReservedDevice] = Field(default_factory=list)


class Resources(mb.Spec):
    limits: Limits | None = None
    reservations: Reservations | None = None


class RestartPolicy(mb.Spec):
    condition: str | None = None
    delay: mb.Duration | None = None
    max_attempts: int | None = None
    window: mb.Duration | None = None


class Preference(mb.Spec):
    spread: str | None = None


class Placement(mb.Spec):
    constraints: list[str] = Field(default_factory=list)
    preferences: list[Preference] = Field(default_factory=list)
    max_replicas_per_node: int | None = None


class UpdateConfig(mb.Spec):
    parallelism: int | None = None
    delay: mb.Duration | None = None
    failure_action: str | None = None
    monitor: mb.Duration | None = None
    max_failure_ratio: float | None = None
    order: Literal["start-first", "stop-first"] | None = None


class Deploy(mb.Spec):
    mode: str | None = None
    endpoint_mode: str | None = None
    replicas: Annotated[int, Field(ge=0)] | None = None
    labels: mb.StrMap = Field(default_factory=dict)
    rollback_config: UpdateConfig | None = None
    update_config: UpdateConfig | None = None
    resources: Resources | None = None
    restart_policy: RestartPolicy | None = None
    placement: Placement | None = None


class WatchRule(mb.Spec):
    path: str
    action: Literal["rebuild", "sync", "restart", "sync+restart", "sync+exec"]
    target: str | None = None
    ignore: list[str] = Field(default_factory=list)
    include: list[str] = Field(default_factory=list)
    exec: mb.ServiceHook | None = None
    initial_sync: StrictBool | None = None


class Develop(mb.Spec):
    watch: list[WatchRule] = Field(default_factory=list)


class BlkioLimit(mb.Spec):
    path: str | None = None
    rate: mb.Bytes | None = None


class BlkioWeight(mb.Spec):
    path: str | None = None
    weight: int | None = None


class BlkioConfig(mb.Spec):
    device_read_bps: list[BlkioLimit] = Field(default_factory=list)
    device_read_iops: list[BlkioLimit] = Field(default_factory=list)
    device_write_bps: list[BlkioLimit] = Field(default_factory=list)
    device_write_iops: list[BlkioLimit] = Field(default_factory=list)
    weight: int | None = None
    weight_device: list[BlkioWeight] = Field(default_factory=list)


class CredentialSpec(mb.Spec):
    config: str | None = None
    file: str | None = None
    registry: str | None = None


class Provider(mb.Spec):
    type: str
    options: dict[str, str | float | bool | list[str | float | bool]] = Field(default_factory=dict)


class ModelBinding(mb.Spec):
    endpoint_var: str | None = None
    model_var: str | None = None


class PreStart(mb.Spec):
    """An init container (compose-go schema only); the fields the Compose docs describe."""

    image: str | None = None
    command: list[str] | None = None
    per_replica: bool | None = None
    user: str | None = None
    privileged: bool | None = None
    working_dir: str | None = None
    environment: mb.StrMap = Field(default_factory=dict)


RESTART_RE = r"^(no|always|unless-stopped|on-failure(:[0-9]+)?)$"
PULL_POLICY_RE = r"^(always|never|build|missing|refresh|daily|weekly|every_([0-9]+[wdhms])+)$"


class Service(mb.Extensible):
    """One service, fully normalized: long syntax everywhere, paths absolute, env resolved."""

    annotations: mb.StrMap = Field(default_factory=dict)
    attach: bool | None = None
    blkio_config: BlkioConfig | None = None
    build: Build | None = None
    cap_add: list[str] = Field(default_factory=list)
    cap_drop: list[str] = Field(default_factory=list)
    cgroup: Literal["host", "private"] | None = None
    cgroup_parent: str | None = None
    command: list[str] | None = None
    configs: list[mb.ServiceSecret] = Field(default_factory=list)
    container_name: Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")] | None = None
    cpu_count: Annotated[int, Field(ge=0)] | None = None
    cpu_percent: Annotated[int, Field(ge=0, le=100)] | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpu_rt_period: int | None = None
    cpu_rt_runtime: int | None = None
    cpus: Annotated[float, Field(ge=0)] | None = None
    cpuset: str | None = None
    credential_spec: CredentialSpec | None = None
    depends_on: dict[mb.Name, DependsOn] = Field(default_factory=dict)
    deploy: Deploy | None = None
    develop: Develop | None = None
    device_cgroup_rules: list[str] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)
    dns: list[str] = Field(default_factory=list)
    dns_opt: list[str] = Field(default_factory=list)
    dns_search: list[str] = Field(default_factory=list)
    domainname: str | None = None
    entrypoint: list[str] | None = None
    env_file: list[EnvFile] = Field(default_factory=list)
    environment: mb.StrMap = Field(default_factory=dict)
    expose: list[str] = Field(default_factory=list)
    external_links: list[str] = Field(default_factory=list)
    extra_hosts: dict[str, list[str]] = Field(default_factory=dict)
    gpus: list[mb.DeviceRequest] = Field(default_factory=list)
    group_add: list[str] = Field(default_factory=list)
    healthcheck: Healthcheck | None = None
    hostname: str | None = None
    image: str | None = None
    init: bool | None = None
    ipc: str | None = None
    isolation: str | None = None
    label_file: list[str] = Field(default_factory=list)
    labels: mb.StrMap = Field(default_factory=dict)
    links: list[str] = Field(default_factory=list)
    logging: Logging | None = None
    mac_address: str | None = None
    mem_limit: mb.Bytes | None = None
    mem_reservation: mb.Bytes | None = None
    mem_swappiness: Annotated[int, Field(ge=0, le=100)] | None = None
    memswap_limit: mb.BytesOrUnlimited | None = None
    models: dict[mb.Name, ModelBinding | None] = Field(default_factory=dict)
    network_mode: str | None = None
    networks: dict[mb.Name, ServiceNetwork | None] = Field(default_factory=dict)
    oom_kill_disable: bool | None = None
    oom_score_adj: Annotated[int, Field(ge=-1000, le=1000)] | None = None
    pid: str | None = None
    pids_limit: int | None = None
    platform: str | None = None
    ports: list[ServicePort] = Field(default_factory=list)
    post_start: list[mb.ServiceHook] = Field(default_factory=list)
    pre_start: list[PreStart] = Field(default_factory=list)
    pre_stop: list[mb.ServiceHook] = Field(default_factory=list)
    privileged: bool | None = None
    profiles: list[str] = Field(default_factory=list)
    provider: Provider | None = None
    pull_policy: Annotated[str, StringConstraints(pattern=PULL_POLICY_RE)] | None = None
    pull_refresh_after: str | None = None
    read_only: bool | None = None
    restart: Annotated[str, StringConstraints(pattern=RESTART_RE)] | None = None
    runtime: str | None = None
    scale: Annotated[int, Field(ge=0)] | None = None
    secrets: list[mb.ServiceSecret] = Field(default_factory=list)
    security_opt: list[str] = Field(default_factory=list)
    shm_size: mb.Bytes | None = None
    stdin_open: bool | None = None
    stop_grace_period: mb.Duration | None = None
    stop_signal: str | None = None
    storage_opt: dict[str, str | int | float | bool] = Field(default_factory=dict)
    sysctls: mb.StrMap = Field(default_factory=dict)
    tmpfs: list[str] = Field(default_factory=list)
    tty: bool | None = None
    ulimits: dict[str, mb.Ulimit] = Field(default_factory=dict)
    use_api_socket: StrictBool | None = None
    user: str | None = None
    userns_mode: str | None = None
    uts: str | None = None
    volumes: list[ServiceVolume] = Field(default_factory=list)
    volumes_from: list[str] = Field(default_factory=list)
    working_dir: str | None = None

    @property
    def replicas(self) -> int:
        """How many containers the service wants (deploy.replicas, else scale, else 1)."""
        if self.deploy is not None and self.deploy.replicas is not None:
            return self.deploy.replicas
        return 1 if self.scale is None else self.scale


class Network(mb.Extensible):
    name: str | None = None
    driver: str | None = None
    driver_opts: mb.DriverOpts = Field(default_factory=dict)
    ipam: mb.Ipam | None = None
    external: bool | None = None
    internal: bool | None = None
    enable_ipv4: bool | None = None
    enable_ipv6: bool | None = None
    attachable: bool | None = None
    labels: mb.StrMap = Field(default_factory=dict)


class Volume(mb.Extensible):
    name: str | None = None
    driver: str | None = None
    driver_opts: mb.DriverOpts = Field(default_factory=dict)
    external: bool | None = None
    labels: mb.StrMap = Field(default_factory=dict)


class Secret(mb.Extensible):
    name: str | None = None
    environment: str | None = None
    file: str | None = None
    external: bool | None = None
    labels: mb.StrMap = Field(default_factory=dict)
    driver: str | None = None
    driver_opts: mb.DriverOpts = Field(default_factory=dict)
    template_driver: str | None = None


class Config(mb.Extensible):
    name: str | None = None
    content: str | None = None
    environment: str | None = None
    file: str | None = None
    external: bool | None = None
    labels: mb.StrMap = Field(default_factory=dict)
    template_driver: str | None = None


class Model(mb.Extensible):
    name: str | None = None
    model: str
    context_size: int | None = None
    runtime_flags: list[str] = Field(default_factory=list)


class Stack(mb.Extensible):
    """The whole normalized project: what the reconciler wants to exist."""

    name: str
    services: dict[mb.Name, Service] = Field(default_factory=dict)
    networks: dict[mb.Name, Network] = Field(default_factory=dict)
    volumes: dict[mb.Name, Volume] = Field(default_factory=dict)
    secrets: dict[mb.Name, Secret] = Field(default_factory=dict)
    configs: dict[mb.Name, Config] = Field(default_factory=dict)
    models: dict[mb.Name, Model | None] = Field(default_factory=dict)  # null: compose-go allows it

    @field_validator("services", "networks", "volumes", "secrets", "configs", "models",
                     mode="before")
    @classmethod
    def _null_is_empty(cls, value):
        return {} if value is None else value
