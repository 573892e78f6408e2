"""A Compose service as the runtime's values: the container's config and its network wishes.

Pure translation at the edge where the pydantic spec ends: no I/O here. Paths the runtime
needs (rootfs, volume dirs, secret files, namespaces) are worked out by the caller and given in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reconciler.spec import model as spec_model, units
from runtime import labels as label_keys, names as naming
from runtime.cgroups import compose as cgroups_compose, model as cgroups_model
from runtime.net import model as net_model, ports as net_ports
from runtime.oci import model as oci_model

DEFAULT_STOP_GRACE = 10.0


@dataclass(frozen=True)
class VolumeUse:
    """A named or anonymous volume a container mounts: its real name and where."""

    name: str
    target: str
    read_only: bool
    copy_image_content: bool
    subpath: str | None = None


@dataclass(frozen=True)
class FileUse:
    """A secret or config: a host file to mount read-only at `target`."""

    kind: str  # secret | config
    key: str
    target: str
    mode: int | None


def container_name(project: str, service: str, svc: spec_model.Service, replica: int) -> str:
    return svc.container_name or naming.container(project, service, replica)


def _real_name(project: str, declared, key: str) -> str:
    """docker compose's name for a network or volume: `name:` as given, an external one's key,
    else `<project>_<key>`."""
    found = declared.get(key)
    if found is not None and found.name:
        return found.name
    if found is not None and found.external:
        return key
    return naming.scoped(project, key)


def network_name(project: str, stack: spec_model.Stack, key: str) -> str:
    return _real_name(project, stack.networks, key)


def volume_name(project: str, stack: spec_model.Stack, key: str) -> str:
    return _real_name(project, stack.volumes, key)


def anonymous_volume_name(cname: str, target: str) -> str:
    """Stable for a container name and target, so a recreated container keeps its data
    (docker carries anonymous volumes over to the new container the same way)."""
    return naming.anonymous_volume(cname, target)


def volume_uses(project: str, stack: spec_model.Stack, svc: spec_model.Service,
                cname: str) -> tuple[VolumeUse, ...]:
    uses = []
    for v in svc.volumes:
        if v.type != "volume":
            continue
        name = (volume_name(project, stack, v.source) if v.source
                else anonymous_volume_name(cname, v.target or ""))
        nocopy = bool(v.volume and v.volume.nocopy)
        subpath = v.volume.subpath if v.volume else None
        uses.append(VolumeUse(name, v.target or "", bool(v.read_only), not nocopy, subpath))
    return tuple(uses)


def file_uses(svc: spec_model.Service) -> tuple[FileUse, ...]:
    out = [FileUse("secret", s.source, _secret_target(s), s.mode) for s in svc.secrets]
    out += [FileUse("config", c.source, c.target or f"/{c.source}", c.mode) for c in svc.configs]
    return tuple(out)


def _secret_target(s: spec_model.mb.ServiceSecret) -> str:
    if not s.target:
        return f"/run/secrets/{s.source}"
    return s.target if s.target.startswith("/") else f"/run/secrets/{s.target}"


def resources(svc: spec_model.Service) -> cgroups_model.Resources:
    """deploy.resources and the legacy keys merged as docker does (cgroups.compose)."""
    res = svc.deploy.resources if svc.deploy and svc.deploy.resources else None
    hard = res.limits if res and res.limits else None
    soft = res.reservations if res and res.reservations else None
    return cgroups_compose.from_compose(
        limits_memory=hard.memory if hard else None,
        reservations_memory=soft.memory if soft else None,
        limits_cpus=hard.cpus if hard else None, limits_pids=hard.pids if hard else None,
        mem_limit=svc.mem_limit, mem_reservation=svc.mem_reservation,
        memswap_limit=svc.memswap_limit, cpus=svc.cpus, cpu_shares=svc.cpu_shares,
        cpu_period=svc.cpu_period, cpu_quota=svc.cpu_quota, cpuset=svc.cpuset,
        pids_limit=svc.pids_limit,
        blkio_weight=svc.blkio_config.weight if svc.blkio_config else None,
        blkio_devices=cgroups_compose.blkio_devices(_blkio_entries(svc.blkio_config)))


def _blkio_entries(blkio: spec_model.BlkioConfig | None) -> list[tuple]:
    """(where, kind, path, value) of each per-device entry of blkio_config."""
    if blkio is None:
        return []
    out = [(f"blkio_config.device_{kind}[{i}]", kind, e.path, e.rate)
           for kind in ("read_bps", "write_bps", "read_iops", "write_iops")
           for i, e in enumerate(getattr(blkio, f"device_{kind}"))]
    out += [(f"blkio_config.weight_device[{i}]", "weight", e.path, e.weight)
            for i, e in enumerate(blkio.weight_device)]
    return out


def _mounts(svc: spec_model.Service, volume_dirs: dict[str, str],
            files: dict[str, str], cname: str) -> tuple[oci_model.Mount, ...]:
    out = []
    for v in svc.volumes:
        target = v.target or ""
        if v.type == "bind":
            options = ("rshared",) if v.bind and v.bind.propagation == "rshared" else ()
            out.append(oci_model.Mount(target, v.source or "", "bind", bool(v.read_only), options))
        elif v.type == "volume":
            out.append(oci_model.Mount(target, volume_dirs[target], "bind", bool(v.read_only)))
        elif v.type == "tmpfs":
            opts = []
            if v.tmpfs and v.tmpfs.size:
                opts.append(f"size={v.tmpfs.size}")
            if v.tmpfs and v.tmpfs.mode is not None:
                opts.append(f"mode={v.tmpfs.mode:o}")
            out.append(oci_model.Mount(target, "", "tmpfs", bool(v.read_only), tuple(opts)))
    for target, source in files.items():
        out.append(oci_model.Mount(target, source, "bind", True))
    return tuple(out)


def _namespace(mode: str | None, resolved: dict[str, str], kind: str) -> str:
    if not mode or mode in ("private", "shareable"):
        return "private"
    if mode == "host":
        return "host"
    return resolved[kind]


def container_config(
    *, project: str, service: str, svc: spec_model.Service, replica: int, cname: str,
    cid: str = "", config_hash: str, image_ref: str, image: oci_model.ImageConfig, rootfs: str,
    volume_dirs: dict[str, str], files: dict[str, str], network: str,
    namespaces: dict[str, str], addresses: tuple[str, ...], nameservers: tuple[str, ...],
    oneoff: bool = False, command: list[str] | None = None, entrypoint: list[str] | None = None,
    environment: dict[str, str] | None = None, tty: bool | None = None,
) -> oci_model.ContainerConfig:
    """`network` is "host", "private" or a namespace path; `namespaces` holds the paths of
    `service:x` / `container:x` modes of pid, ipc and uts; `volume_dirs` maps a volume's target
    to its host dir, `files` a secret's or config's target to its host file. `cid`: the
    container's id (runtime.oci.model.new_id), which also gives its default hostname."""
    env = {k: "" if v is None else str(v) for k, v in svc.environment.items()}
    env.update(environment or {})
    grace = units.parse_duration(svc.stop_grace_period) if svc.stop_grace_period else DEFAULT_STOP_GRACE
    labels = {k: str(v) for k, v in svc.labels.items()}
    labels.update(label_keys.container(project, service, replica, oneoff))
    if config_hash:  # what `config --hash` prints, under docker compose's name for it
        labels[label_keys.CONFIG_HASH] = config_hash
    return oci_model.ContainerConfig(
        name=cname, id=cid,
        identity=oci_model.Identity(project, service, replica, config_hash, image_ref, oneoff),
        rootfs=rootfs, image=image,
        entrypoint=tuple(entrypoint) if entrypoint is not None else (
            tuple(svc.entrypoint) if svc.entrypoint is not None else None),
        command=tuple(command) if command is not None else (
            tuple(svc.command) if svc.command is not None else None),
        environment=env,
        env_files=tuple(f.path for f in svc.env_file if f.required),
        working_dir=svc.working_dir or "", user=svc.user or "",
        hostname=svc.hostname or "", domainname=svc.domainname or "",
        read_only=bool(svc.read_only), tmpfs=tuple(svc.tmpfs),
        mounts=_mounts(svc, volume_dirs, files, cname),
        addresses=addresses,
        extra_hosts=tuple((host, ip) for host, ips in svc.extra_hosts.items() for ip in ips),
        dns=nameservers, dns_search=tuple(svc.dns_search), dns_options=tuple(svc.dns_opt),
        shm_size=svc.shm_size or oci_model.DEFAULT_SHM_SIZE,
        ulimits=tuple(oci_model.Ulimit(k, u.soft, u.hard) for k, u in svc.ulimits.items()),
        sysctls={k: str(v) for k, v in svc.sysctls.items()},
        cap_add=tuple(svc.cap_add), cap_drop=tuple(svc.cap_drop),
        privileged=bool(svc.privileged),
        no_new_privileges=any(o.replace("=", ":") in ("no-new-privileges", "no-new-privileges:true")
                              for o in svc.security_opt),
        seccomp=security_option(svc.security_opt, "seccomp"),
        apparmor=security_option(svc.security_opt, "apparmor"),
        devices=tuple(oci_model.Device(d.source, d.target or d.source, d.permissions or "rwm")
                      for d in svc.devices),
        init=bool(svc.init), stop_signal=svc.stop_signal or "", stop_grace_period=grace,
        labels=labels, resources=resources(svc), network=network,
        pid=_namespace(svc.pid, namespaces, "pid"), ipc=_namespace(svc.ipc, namespaces, "ipc"),
        uts=_namespace(svc.uts, namespaces, "uts"),
        tty=bool(svc.tty) if tty is None else tty,
    )


def security_option(options: list[str], key: str) -> str:
    """The value of `key=value` (or docker's older `key:value`) in security_opt; the last one
    wins, as with docker; "" when it is not there."""
    found = ""
    for option in options:
        name, sep, value = option.partition("=")
        if not sep:
            name, sep, value = option.partition(":")
        if sep and name.strip() == key:
            found = value.strip()
    return found


def network_mode(svc: spec_model.Service) -> str:
    """bridge, host, none, service:x or container:x."""
    mode = svc.network_mode or "bridge"
    return "bridge" if mode == "default" else mode


def container_net(*, project: str, stack: spec_model.Stack, service: str,
                  svc: spec_model.Service, cname: str, netns: str | None,
                  oneoff: bool = False) -> net_model.ContainerNet:
    """The container's wishes for the network runtime: endpoints in declaration order (the
    runtime orders them by priority), aliases, published ports, links, resolver settings."""
    mode = network_mode(svc)
    endpoints = []
    if mode == "bridge":
        for key, opts in svc.networks.items():
            aliases: tuple[str, ...] = (service,) if not oneoff else ()
            aliases += tuple(opts.aliases) if opts else ()
            endpoints.append(net_model.EndpointSpec(
                network=network_name(project, stack, key),
                ipv4=getattr(opts, "ipv4_address", None) if opts else None,
                mac=(opts.mac_address if opts and opts.mac_address else svc.mac_address),
                aliases=aliases,
                priority=int(opts.priority) if opts and opts.priority is not None else 0))
    ports: list[net_model.PortMapping] = []
    if not oneoff:
        for i, p in enumerate(svc.ports):
            ports += net_ports.expand(p.target, p.published, p.protocol, p.host_ip or "",
                                      where=f"services.{service}.ports[{i}]")
    links = []
    for link in svc.links:
        target, _, alias = link.partition(":")
        links.append((target, alias or target))
    return net_model.ContainerNet(
        container=cname,
        netns=None if netns is None else Path(netns),
        service=service, hostname=svc.hostname, mode=mode, endpoints=tuple(endpoints),
        ports=tuple(ports), links=tuple(links), dns=tuple(svc.dns),
        dns_search=tuple(svc.dns_search), dns_opt=tuple(svc.dns_opt),
        extra_hosts=tuple((host, ip) for host, ips in svc.extra_hosts.items() for ip in ips))


def image_config(cfg) -> oci_model.ImageConfig:
    """The image store's config values as the OCI runtime takes them."""
    return oci_model.ImageConfig(
        entrypoint=tuple(cfg.entrypoint), cmd=tuple(cfg.cmd), env=tuple(cfg.env),
        working_dir=cfg.working_dir, user=cfg.user, stop_signal=cfg.stop_signal,
        labels=dict(cfg.labels))


def healthcheck(svc: spec_model.Service, image_test: tuple[str, ...]) -> dict | None:
    """The effective healthcheck: the service's over the image's; None when there is none."""
    h = svc.healthcheck
    if h is not None and (h.disable or (h.test and h.test[0] == "NONE")):
        return None
    test = list(h.test) if h is not None and h.test else list(image_test)
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        argv = ["/bin/sh", "-c", " ".join(test[1:])]
    elif test[0] == "CMD":
        argv = test[1:]
    else:
        argv = ["/bin/sh", "-c", " ".join(test)]

    def seconds(value, default):
        return units.parse_duration(value) if value else default

    return {
        "argv": argv,
        "interval": seconds(h.interval if h else None, 30.0),
        "timeout": seconds(h.timeout if h else None, 30.0),
        "retries": h.retries if h and h.retries is not None else 3,
        "start_period": seconds(h.start_period if h else None, 0.0),
        "start_interval": seconds(h.start_interval if h else None, 5.0),
    }
