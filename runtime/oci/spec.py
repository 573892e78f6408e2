"""Build the OCI runtime config.json of a container from its ContainerConfig and gathered host
facts (pure)."""

from __future__ import annotations

import json
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime import labels
from runtime.cgroups import model as cgroups_model
from runtime.oci import caps, model, users

INIT_PATH = "/sbin/docker-init"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

RLIMITS = {
    "as": "RLIMIT_AS", "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA",
    "fsize": "RLIMIT_FSIZE", "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK",
    "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE",
    "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO",
    "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK",
}

MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
ETC_FILES = ("hosts", "resolv.conf", "hostname")


class SpecError(ValueError):
    pass


@dataclass(frozen=True)
class DeviceNode:
    """A host device as stat() saw it, to recreate inside the container."""

    path: str  # inside the container
    type: str  # c | b
    major: int
    minor: int
    file_mode: int
    permissions: str = "rwm"


@dataclass(frozen=True)
class HostFacts:
    """What building a spec needs from the host and the image's files, gathered beforehand."""

    user: users.User
    cgroups_path: str
    etc_dir: str  # host dir holding the generated hosts, resolv.conf and hostname
    env_file_env: tuple[str, ...] = ()
    devices: tuple[DeviceNode, ...] = ()
    init_binary: str = "/usr/bin/tini-static"
    blkio_weight: bool = True
    capability_bound: tuple[str, ...] = caps.ALL
    extra_annotations: Mapping[str, str] = field(default_factory=dict)
    # linux.seccomp as seccomp.for_container made it (shared between containers: never
    # changed here); None: no filter. apparmor_profile: "" for none.
    seccomp: Mapping[str, Any] | None = None
    apparmor_profile: str = ""


def stop_signal(config: model.ContainerConfig) -> str:
    return normalize_signal(config.stop_signal or config.image.stop_signal or "SIGTERM")


def normalize_signal(name: str) -> str:
    """"TERM", "SIGTERM", "15" -> "SIGTERM"."""
    text = str(name).strip().upper()
    if text.isdigit():
        return signal.Signals(int(text)).name
    text = text if text.startswith("SIG") else "SIG" + text
    if text not in signal.Signals.__members__:
        raise SpecError(f"stop_signal: unknown signal {name!r}")
    return text


def process_args(config: model.ContainerConfig) -> list[str]:
    """Compose's rule: setting `entrypoint` drops the image's CMD as well as its ENTRYPOINT."""
    if config.entrypoint is not None:
        args = list(config.entrypoint) + list(config.command or ())
    else:
        command = config.command if config.command is not None else config.image.cmd
        args = list(config.image.entrypoint) + list(command)
    if not args:
        raise SpecError(f"{config.name}: no command: the image has none and the service sets none")
    if config.init:
        args = [INIT_PATH, "--"] + args
    return args


def environment(config: model.ContainerConfig, facts: HostFacts) -> list[str]:
    """Image env, then env_file, then environment; later wins; PATH, HOSTNAME and HOME filled in."""
    env: dict[str, str] = {}
    for item in list(config.image.env) + list(facts.env_file_env):
        key, _, value = item.partition("=")
        env[key] = value
    env.update(config.environment)
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOSTNAME", hostname(config))
    env.setdefault("HOME", facts.user.home or "/")
    return [f"{k}={v}" for k, v in env.items()]


def hostname(config: model.ContainerConfig) -> str:
    """docker's default: the short id (the name for a container keyed by its name)."""
    default = config.name if config.cid == config.name else config.id[:model.SHORT_ID]
    return (config.hostname or default)[:63]


def etc_files(config: model.ContainerConfig, host_nameservers: tuple[str, ...] = ()) -> dict[str, str]:
    """Contents of the container's /etc/hosts, /etc/resolv.conf and /etc/hostname."""
    name = hostname(config)
    fqdn = f"{name}.{config.domainname}" if config.domainname else name
    names = f"{fqdn} {name}" if fqdn != name else name
    hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    hosts += [f"{ip}\t{names}" for ip in config.addresses]
    hosts += [f"{ip}\t{host}" for host, ip in config.extra_hosts]
    resolv = [f"nameserver {ns}" for ns in (config.dns or host_nameservers)]
    if config.dns_search:
        resolv.append("search " + " ".join(config.dns_search))
    if config.dns_options:
        resolv.append("options " + " ".join(config.dns_options))
    return {
        "hosts": "\n".join(hosts) + "\n",
        "resolv.conf": "\n".join(resolv) + "\n",
        "hostname": name + "\n",
    }


def clamp_ulimits(ulimits: tuple[model.Ulimit, ...],
                  host_hard: Mapping[str, int]) -> tuple[tuple[model.Ulimit, ...], list[str]]:
    """Lower limits above what this host lets us set (no CAP_SYS_RESOURCE): runc would fail."""
    out, warnings = [], []
    for u in ulimits:
        if u.name not in RLIMITS:
            raise SpecError(f"ulimits.{u.name}: unknown limit (known: {', '.join(sorted(RLIMITS))})")
        if u.soft > u.hard:
            raise SpecError(f"ulimits.{u.name}: soft limit {u.soft} is above hard limit {u.hard}")
        cap = host_hard.get(u.name)
        if cap is not None and u.hard > cap:
            warnings.append(f"ulimits.{u.name}: {u.hard} lowered to the host's hard limit {cap}")
            u = model.Ulimit(u.name, min(u.soft, cap), cap)
        out.append(u)
    return tuple(out), warnings


def resources(res: cgroups_model.Resources, blkio_weight: bool = True) -> dict[str, Any]:
    """linux.resources of the OCI spec (also the input of `runc update -r`)."""
    out: dict[str, Any] = {}
    memory = {
        "limit": res.memory_limit,
        "reservation": res.memory_reservation,
        "swap": res.memory_swap,
    }
    memory = {k: v for k, v in memory.items() if v is not None}
    if memory:
        out["memory"] = memory
    cpu = {
        "shares": res.cpu_shares,
        "quota": res.cpu_quota,
        "period": res.cpu_period if res.cpu_quota is not None else None,
        "cpus": res.cpuset_cpus,
        "mems": res.cpuset_mems,
    }
    cpu = {k: v for k, v in cpu.items() if v is not None}
    if cpu:
        out["cpu"] = cpu
    if res.pids_limit is not None:
        out["pids"] = {"limit": res.pids_limit}
    block: dict[str, Any] = {}
    if res.blkio_weight is not None and blkio_weight:
        block["weight"] = res.blkio_weight
    for kind, key in _THROTTLES.items():
        rates = [{"major": d.major, "minor": d.minor, "rate": d.value}
                 for d in res.blkio_devices if d.kind == kind]
        if rates:
            block[key] = rates
    weights = [{"major": d.major, "minor": d.minor, "weight": d.value}
               for d in res.blkio_devices if d.kind == "weight"]
    if weights and blkio_weight:
        block["weightDevice"] = weights
    if block:
        out["blockIO"] = block
    return out


# blkio_config's per-device limits and their keys in the OCI spec's linux.resources.blockIO.
_THROTTLES = {"read_bps": "throttleReadBpsDevice", "write_bps": "throttleWriteBpsDevice",
              "read_iops": "throttleReadIOPSDevice", "write_iops": "throttleWriteIOPSDevice"}


def namespaces(config: model.ContainerConfig) -> list[dict[str, str]]:
    out = [{"type": "mount"}, {"type": "cgroup"}]
    for kind, mode in (("network", config.network), ("pid", config.pid), ("ipc", config.ipc),
                       ("uts", config.uts)):
        if mode == "host":
            continue
        if mode.startswith("/"):
            out.append({"type": kind, "path": mode})
        elif mode in ("private", "shareable", "none", ""):
            out.append({"type": kind})
        else:
            raise SpecError(
                f"{config.name}: {kind} mode {mode!r}: expected private, host or a namespace path")
    if config.uts == "host" and (config.hostname or config.domainname):
        raise SpecError(f"{config.name}: hostname cannot be set with uts mode host")
    return out


def mounts(config: model.ContainerConfig, facts: HostFacts) -> list[dict[str, Any]]:
    sys_opts = ["nosuid", "noexec", "nodev", "rw" if config.privileged else "ro"]
    out: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={config.shm_size}"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": sys_opts + ["relatime"]},
    ]
    for entry in config.tmpfs:
        target, _, opts = entry.partition(":")
        options = ["nosuid", "nodev", "noexec"] + [o for o in opts.split(",") if o]
        out.append({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options})
    for m in config.mounts:
        if m.type == "tmpfs":
            out.append({"destination": m.target, "type": "tmpfs", "source": "tmpfs",
                        "options": ["nosuid", "nodev"] + list(m.options) + (["ro"] if m.read_only else [])})
        elif m.type == "bind":
            if not m.source.startswith("/"):
                raise SpecError(
                    f"{config.name}: mount {m.target}: source {m.source!r} must be an absolute host path")
            out.append({"destination": m.target, "type": "bind", "source": m.source,
                        "options": ["rbind", "rprivate", "ro" if m.read_only else "rw"] + list(m.options)})
        else:
            raise SpecError(f"{config.name}: mount {m.target}: type {m.type!r} (expected bind or tmpfs)")
    # Like docker: writable for the container unless its root is read-only; regenerated by us.
    etc_mode = "ro" if config.read_only else "rw"
    for name in ETC_FILES:
        if config.network == "host" and name == "hostname":
            continue
        out.append({"destination": f"/etc/{name}", "type": "bind", "source": f"{facts.etc_dir}/{name}",
                    "options": ["rbind", "rprivate", etc_mode]})
    if config.init:
        out.append({"destination": INIT_PATH, "type": "bind", "source": facts.init_binary,
                    "options": ["rbind", "rprivate", "ro"]})
    return out


def build(config: model.ContainerConfig, facts: HostFacts) -> dict[str, Any]:
    """The whole config.json, as a dict."""
    cap_set = list(caps.effective(config.cap_add, config.cap_drop, config.privileged, facts.capability_bound))
    process: dict[str, Any] = {
        "terminal": config.tty,
        "user": {"uid": facts.user.uid, "gid": facts.user.gid},
        "args": process_args(config),
        "env": environment(config, facts),
        "cwd": config.working_dir or config.image.working_dir or "/",
        "capabilities": {"bounding": cap_set, "effective": cap_set, "permitted": cap_set},
        "noNewPrivileges": config.no_new_privileges,
    }
    if facts.apparmor_profile:
        process["apparmorProfile"] = facts.apparmor_profile
    if facts.user.additional_gids:
        process["user"]["additionalGids"] = list(facts.user.additional_gids)
    if config.ulimits:
        process["rlimits"] = [{"type": RLIMITS[u.name], "soft": u.soft, "hard": u.hard}
                              for u in config.ulimits]
    res = resources(config.resources, facts.blkio_weight)
    res["devices"] = ([{"allow": True, "access": "rwm"}] if config.privileged
                      else [{"allow": False, "access": "rwm"}])
    res["devices"] += [{"allow": True, "type": d.type, "major": d.major, "minor": d.minor,
                        "access": d.permissions} for d in facts.devices]
    sysctl = dict(config.sysctls)
    if config.domainname:
        sysctl["kernel.domainname"] = config.domainname  # runc 1.1 has no "domainname" field
    linux: dict[str, Any] = {
        "namespaces": namespaces(config),
        "cgroupsPath": facts.cgroups_path,
        "resources": res,
        "devices": [{"path": d.path, "type": d.type, "major": d.major, "minor": d.minor,
                     "fileMode": d.file_mode, "uid": 0, "gid": 0} for d in facts.devices],
    }
    if sysctl:
        linux["sysctl"] = sysctl
    if facts.seccomp is not None:
        linux["seccomp"] = facts.seccomp
    if not config.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": config.rootfs, "readonly": config.read_only},
        "mounts": mounts(config, facts),
        "linux": linux,
        "annotations": container_annotations(config, facts),
    }
    if config.uts != "host":
        spec["hostname"] = hostname(config)
    return spec


def container_annotations(config: model.ContainerConfig, facts: HostFacts) -> dict[str, str]:
    """Image labels, then service labels, then identity (which a label cannot override)."""
    ident = config.identity
    out = dict(config.image.labels)
    out.update(config.labels)
    out.update(facts.extra_annotations)
    out.update({
        labels.OWN_PROJECT: ident.project,
        labels.OWN_SERVICE: ident.service,
        labels.OWN_REPLICA: str(ident.replica),
        labels.OWN_CONFIG_HASH: ident.config_hash,
        labels.OWN_IMAGE: ident.image,
        labels.OWN_STOP_SIGNAL: stop_signal(config),
        labels.OWN_STOP_GRACE: repr(float(config.stop_grace_period)),
        labels.OWN_CGROUP: facts.cgroups_path,
        labels.OWN_NAME: config.name,
        **labels.container(ident.project, ident.service, ident.replica, ident.oneoff),
    })
    return out


def dumps(spec: dict[str, Any]) -> str:
    # Compact: an indent makes json fall back to its pure-Python encoder (3 ms a container).
    linux = spec.get("linux") or {}
    if not linux.get("seccomp"):
        return json.dumps(spec, sort_keys=True, separators=(",", ":"))
    # The filter is most of the document and the same object for every container with the
    # same capabilities (seccomp caches it): encoded once, put in place of a marker.
    text = json.dumps({**spec, "linux": {**linux, "seccomp": _SECCOMP_MARK}},
                      sort_keys=True, separators=(",", ":"))
    mark = f'"{_SECCOMP_MARK}"'
    if text.count(mark) != 1:  # a label or argument of that very text: no shortcut
        return json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return text.replace(mark, _encoded_filter(linux["seccomp"]))


_SECCOMP_MARK = "@pcompose-seccomp@"
_encoded: dict[int, tuple[Mapping[str, Any], str]] = {}


def _encoded_filter(profile: Mapping[str, Any]) -> str:
    found = _encoded.get(id(profile))
    if found is None or found[0] is not profile:
        if len(_encoded) > 64:
            _encoded.clear()
        # The profile is kept with its text, so its id cannot be reused by another object.
        found = _encoded[id(profile)] = (profile, json.dumps(profile, sort_keys=True,
                                                             separators=(",", ":")))
    return found[1]
