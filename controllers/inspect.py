"""One container as `inspect` describes it: what the machine holds about it, read and never changed.

runc's state and the bundle's config.json say what runs (process, limits, mounts, labels), the
markers beside it what happened (health, restarts, the limits set in place), the network
records where it is attached. Nothing here asks the agent or writes a file.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from controllers import context, networks, services
from runtime import labels, volumes
from runtime.images import store as image_store
from runtime.net import records
from runtime.oci import spec as oci_spec

# The limits the agent set last, at creation or in place through `runc update` (which leaves
# config.json as it was): reconciler.agent.machine writes it under this name.
LIMITS = "limits.json"

# The mounts every container gets (spec.mounts): not the user's, docker does not list them.
_SYSTEM_MOUNTS = {("/proc", "proc"), ("/dev", "tmpfs"), ("/dev/pts", "devpts"),
                  ("/dev/shm", "shm"), ("/dev/mqueue", "mqueue"), ("/sys", "sysfs"),
                  ("/sys/fs/cgroup", "cgroup")}


class Ambiguous(LookupError):
    """A prefix that starts more than one container's id."""


def resolve(views: Sequence[services.ContainerView], ref: str) -> services.ContainerView | None:
    """docker's lookup of a container: its whole id, else its name (`/name` too), else the one
    id that starts with `ref`; None when nothing matches."""
    for match in ([v for v in views if v.id == ref],
                  [v for v in views if v.name == ref.removeprefix("/")]):
        if match:
            return match[0]
    starting = [v for v in views if ref and v.id.startswith(ref)]
    if len(starting) > 1:
        raise Ambiguous(f"multiple IDs found with provided prefix: {ref}")
    return starting[0] if starting else None


@dataclass(frozen=True)
class Process:
    """The container's process as config.json has it."""

    args: tuple[str, ...]  # the command as the user knows it (the view's: no `init` before it)
    init: bool
    env: tuple[str, ...]
    cwd: str
    uid: int
    gid: int
    terminal: bool
    capabilities: tuple[str, ...]
    no_new_privileges: bool
    apparmor: str


@dataclass(frozen=True)
class Limits:
    """The cgroup limits in docker's units (0: none), as `runc update` left them."""

    memory: int = 0
    memory_reservation: int = 0
    memory_swap: int = 0
    nano_cpus: int = 0
    cpu_shares: int = 0
    cpu_period: int = 0  # 0: the kernel's default, not set by the stack
    cpu_quota: int = 0
    cpuset_cpus: str = ""
    pids: int | None = None


@dataclass(frozen=True)
class Mount:
    """A volume, bind or tmpfs mount of the user's (docker's Mounts entry)."""

    type: str  # volume | bind | tmpfs
    source: str
    destination: str
    read_only: bool
    name: str = ""  # a volume's
    driver: str = ""  # a volume's
    propagation: str = ""  # a bind's


@dataclass(frozen=True)
class Endpoint:
    """The container's place in one network."""

    network: str
    network_id: str
    ipv4: str
    prefixlen: int
    gateway: str
    mac: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class HealthResult:
    start: float
    end: float
    exit_code: int
    output: str


@dataclass(frozen=True)
class Health:
    status: str
    failing_streak: int
    log: tuple[HealthResult, ...]


@dataclass(frozen=True)
class Details:
    """Everything `inspect` shows of one container, as the machine has it now."""

    view: services.ContainerView
    process: Process
    hostname: str
    stop_signal: str
    read_only: bool
    privileged: bool
    seccomp: bool  # a seccomp filter applies
    shm_size: int
    limits: Limits
    mounts: tuple[Mount, ...]
    network_mode: str  # docker's: the first network's name, host, none or container:<id>
    endpoints: tuple[Endpoint, ...]
    sandbox: str  # the network namespace's path, "" without one of its own
    health: Health | None
    restart_count: int
    log_path: str
    etc_dir: str
    image_entrypoint: tuple[str, ...]  # the image's ENTRYPOINT; () when it has none or is gone


async def details(ctx: context.Context, views: Sequence[services.ContainerView]) -> list[Details]:
    """The details of `views` (found with services.list_containers), in their order."""
    return await asyncio.to_thread(_all_details, ctx, list(views))


def _all_details(ctx: context.Context, views: list[services.ContainerView]) -> list[Details]:
    attachments = records.attachments(ctx.root)
    nets = {n.name: n for n in networks.list_all(ctx)} if attachments else {}
    by_mountpoint = {str(v.mountpoint): v for v in volumes.list_all(ctx.root)}
    entrypoints = {i: _image_entrypoint(ctx, i) for i in {v.image_id for v in views}}
    # The network records know a container by its name.
    return [_details(ctx, v, attachments.get(v.name), nets, by_mountpoint, entrypoints[v.image_id])
            for v in views]


def _image_entrypoint(ctx: context.Context, image_id: str) -> tuple[str, ...]:
    try:
        record = ctx.images.resolve(image_id) if image_id else None
    except image_store.StoreError:
        return ()
    return tuple(record.config.entrypoint) if record else ()


def _details(ctx: context.Context, view: services.ContainerView, att, nets: Mapping,
             by_mountpoint: Mapping[str, volumes.Volume], entrypoint: tuple[str, ...]) -> Details:
    lay = ctx.layout
    doc = context.read_json(lay.bundle(view.id) / "config.json")
    linux = doc.get("linux") or {}
    mounts = doc.get("mounts") or []
    endpoints = tuple(_endpoint(ep, nets.get(ep.network)) for ep in att.endpoints) if att else ()
    shm: Mapping = next((m for m in mounts if m.get("destination") == "/dev/shm"
                and (m.get("destination"), m.get("source")) in _SYSTEM_MOUNTS), {})
    return Details(
        view=view, process=_process(doc.get("process") or {}, view.command),
        hostname=doc.get("hostname", ""),
        stop_signal=(doc.get("annotations") or {}).get(labels.OWN_STOP_SIGNAL, ""),
        read_only=bool((doc.get("root") or {}).get("readonly")),
        # Only a privileged container goes without masked paths (spec.build).
        privileged=bool(doc) and "maskedPaths" not in linux,
        seccomp=bool(linux.get("seccomp")),
        shm_size=_option_size(shm.get("options") or ()),
        limits=_limits(context.read_json(ctx.container_dir(view.id) / LIMITS),
                       linux.get("resources") or {}),
        mounts=tuple(_mounts(mounts, lay.etc_dir(view.id), by_mountpoint)),
        network_mode=_network_mode(att, linux.get("namespaces") or [], ctx.netns),
        endpoints=endpoints,
        sandbox=str(att.container.netns) if att and att.container.netns else "",
        health=_health(context.health_of(ctx, view.id)),
        restart_count=int(context.read_json(ctx.container_dir(view.id) / context.RESTARTS)
                          .get("count", 0)),
        log_path=str(lay.log_path(view.id)), etc_dir=str(lay.etc_dir(view.id)),
        image_entrypoint=entrypoint)


def _process(process: Mapping, command: tuple[str, ...]) -> Process:
    user = process.get("user") or {}
    return Process(
        args=command, init=(process.get("args") or [None])[0] == oci_spec.INIT_PATH,
        env=tuple(process.get("env") or ()), cwd=process.get("cwd", ""),
        uid=int(user.get("uid", 0)), gid=int(user.get("gid", 0)),
        terminal=bool(process.get("terminal")),
        capabilities=tuple((process.get("capabilities") or {}).get("bounding") or ()),
        no_new_privileges=bool(process.get("noNewPrivileges")),
        apparmor=process.get("apparmorProfile", ""))


def _limits(recorded: Mapping, resources: Mapping) -> Limits:
    """From the agent's record when there is one (it follows in-place updates), else from
    config.json's linux.resources (a container made without the agent: `run`)."""
    if recorded:
        cpus = recorded.get("cpus")
        return Limits(
            memory=recorded.get("memory") or 0,
            memory_reservation=recorded.get("memory_reservation") or 0,
            memory_swap=recorded.get("memory_swap") or 0,
            nano_cpus=round(cpus * 1e9) if cpus else 0,
            cpu_shares=recorded.get("cpu_shares") or 0,
            cpu_period=recorded.get("cpu_period") or 0,
            cpuset_cpus=recorded.get("cpuset") or "", pids=recorded.get("pids"))
    memory, cpu = resources.get("memory") or {}, resources.get("cpu") or {}
    quota, period = cpu.get("quota"), cpu.get("period") or 0
    return Limits(
        memory=memory.get("limit") or 0, memory_reservation=memory.get("reservation") or 0,
        memory_swap=memory.get("swap") or 0,
        nano_cpus=round(quota * 1e9 / period) if quota and period else 0,
        cpu_shares=cpu.get("shares") or 0,
        cpu_period=period if period != 100_000 else 0,  # the default the runtime writes
        cpuset_cpus=cpu.get("cpus") or "", pids=(resources.get("pids") or {}).get("limit"))


def _option_size(options: Sequence[str]) -> int:
    for option in options:
        if option.startswith("size="):
            text = option[5:]
            units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
            if text[-1:].lower() in units:
                return int(text[:-1]) * units[text[-1].lower()]
            return int(text) if text.isdigit() else 0
    return 0


def _mounts(mounts: Sequence[Mapping], etc_dir: Path,
            by_mountpoint: Mapping[str, volumes.Volume]):
    """The user's mounts: volumes (bound from their mountpoint), binds (secrets and configs
    among them, as docker compose mounts them) and tmpfs; not /proc, /dev and the like, the
    generated /etc files or the init."""
    for m in mounts:
        target, source, kind = m.get("destination", ""), m.get("source", ""), m.get("type", "")
        options = tuple(m.get("options") or ())
        if kind != "bind" and (target, source) in _SYSTEM_MOUNTS:
            continue
        if target == oci_spec.INIT_PATH or (kind == "bind" and Path(source).parent == etc_dir):
            continue
        read_only = "ro" in options
        if kind == "tmpfs":
            yield Mount("tmpfs", "", target, read_only)
            continue
        vol = by_mountpoint.get(source)
        if vol is not None:
            yield Mount("volume", source, target, read_only, name=vol.name, driver=vol.driver)
            continue
        yield Mount("bind", source, target, read_only,
                    propagation="rshared" if "rshared" in options else "rprivate")


def _network_mode(att, namespaces: Sequence[Mapping], host_netns: Path | None) -> str:
    if att is not None:
        mode = att.container.mode
        if mode == "bridge":
            return att.endpoints[0].network if att.endpoints else "none"
        return mode  # container:<id>, as the attachment settled a `service:x`
    net = next((n for n in namespaces if n.get("type") == "network"), None)
    if net is None or (host_netns and net.get("path") == str(host_netns)):
        return "host"  # the machine's namespace, or the simulated host's
    return "none" if not net.get("path") else "container"  # a namespace made elsewhere


def _endpoint(ep, net) -> Endpoint:
    prefixlen = ipaddress.ip_network(net.subnet).prefixlen if net else 0
    return Endpoint(network=ep.network, network_id=net.id if net else "", ipv4=ep.ipv4,
                    prefixlen=prefixlen, gateway=net.gateway if net else "", mac=ep.mac,
                    aliases=tuple(ep.aliases))


def _health(state: Mapping) -> Health | None:
    if not state.get("check"):
        return None
    return Health(status=state.get("status", "starting"),
                  failing_streak=int(state.get("failing_streak", 0)),
                  log=tuple(HealthResult(float(e.get("start", 0)), float(e.get("end", 0)),
                                         int(e.get("exit_code", 0)), str(e.get("output", "")))
                            for e in state.get("log") or ()))
