"""Gather what a spec needs from the host and the rootfs (blocking I/O; call via asyncio.to_thread)."""

from __future__ import annotations

import dataclasses
import functools
import os
import resource
import stat
from pathlib import Path

from runtime.cgroups import drivers
from runtime.oci import apparmor, caps, layout, model, seccomp, spec, users


def gather(lay: layout.Layout, config: model.ContainerConfig,
           driver: drivers.Driver) -> tuple[model.ContainerConfig, spec.HostFacts, list[str]]:
    """Return the config with host-clamped ulimits, the host facts, and warnings to log."""
    ulimits, warnings = spec.clamp_ulimits(config.ulimits, host_hard_limits())
    config = dataclasses.replace(config, ulimits=ulimits)
    blkio = driver.supports("blkio", "blkio.weight") or driver.supports("blkio", "blkio.bfq.weight")
    if config.resources.blkio_weight is not None and not blkio:
        warnings.append("blkio_config.weight: this host's I/O scheduler has no weight; ignored")
    if any(d.kind == "weight" for d in config.resources.blkio_devices) and not blkio:
        warnings.append("blkio_config.weight_device: this host's I/O scheduler has no weight; "
                        "ignored")
    facts = spec.HostFacts(
        user=users.resolve_in_rootfs(config.user or config.image.user, config.rootfs),
        cgroups_path=lay.cgroups_path(config.identity.project, config.cid),
        etc_dir=str(lay.etc_dir(config.cid)),
        env_file_env=tuple(line for path in config.env_files for line in read_env_file(path)),
        devices=tuple(device_node(d) for d in config.devices) + (host_devices() if config.privileged else ()),
        init_binary=init_binary(),
        blkio_weight=blkio,
        capability_bound=capability_bound(),
        **security_profiles(config),
    )
    missing = set(caps.effective(config.cap_add, config.cap_drop, False)) - set(facts.capability_bound)
    if missing:
        raise spec.SpecError(f"{config.name}: cap_add: this host cannot grant {', '.join(sorted(missing))}")
    return config, facts, warnings


def security_profiles(config: model.ContainerConfig) -> dict:
    """The seccomp filter and AppArmor profile of the container (HostFacts fields); the
    filter depends on the capabilities the container ends up with."""
    bound = capability_bound()
    held = caps.effective(config.cap_add, config.cap_drop, config.privileged, bound)
    try:
        return {"seccomp": seccomp.for_container(config.seccomp, held, config.privileged),
                "apparmor_profile": apparmor.profile_for(config.apparmor, config.privileged)}
    except (seccomp.ProfileError, apparmor.ProfileNotLoaded) as err:
        raise spec.SpecError(f"{config.name}: security_opt: {err}") from None


@functools.cache
def host_hard_limits() -> dict[str, int]:
    out = {}
    for name, const in spec.RLIMITS.items():
        number = getattr(resource, const, None)
        if number is not None:
            hard = resource.getrlimit(number)[1]
            if hard != resource.RLIM_INFINITY:
                out[name] = hard
    return out


def read_env_file(path: str) -> list[str]:
    """Compose's env_file: KEY=VALUE lines, # comments, blank lines; quotes around values dropped."""
    out = []
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.removeprefix("export ").strip()
        if not key or " " in key:
            raise spec.SpecError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out.append(f"{key}={value}" if sep else f"{key}=")
    return out


def device_node(device: model.Device) -> spec.DeviceNode:
    st = os.stat(device.host_path)
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise spec.SpecError(f"devices: {device.host_path} is not a device")
    return spec.DeviceNode(
        path=device.container_path or device.host_path, type=kind,
        major=os.major(st.st_rdev), minor=os.minor(st.st_rdev),
        file_mode=stat.S_IMODE(st.st_mode), permissions=device.permissions,
    )


def init_binary() -> str:
    """A static init, since the image may have no libc: tini-static, else catatonit."""
    for path in ("/usr/bin/tini-static", "/usr/bin/catatonit"):
        if os.path.exists(path):
            return path
    return "/usr/bin/tini-static"


def host_nameservers() -> tuple[str, ...]:
    """The host's resolvers, minus loopback ones (unreachable from a container's netns)."""
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except FileNotFoundError:
        return ()
    found = [ln.split()[1] for ln in lines if ln.startswith("nameserver") and len(ln.split()) > 1]
    return tuple(ns for ns in found if not ns.startswith("127.") and ns != "::1")


@functools.cache
def capability_bound() -> tuple[str, ...]:
    """Our own bounding set: what a container started by us can be given at most."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return caps.from_mask(int(line.split()[1], 16))
    return caps.ALL


_NOT_PASSED = ("/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/console", "/dev/ptmx", "/dev/fd")


def host_devices() -> tuple[spec.DeviceNode, ...]:
    """Every device node of the host's /dev, as docker gives a privileged container."""
    found = []
    for dirpath, dirnames, filenames in os.walk("/dev"):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in _NOT_PASSED]
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if path in _NOT_PASSED or os.path.islink(path):
                continue
            try:
                found.append(device_node(model.Device(path)))
            except (spec.SpecError, OSError):
                continue  # not a device, or gone meanwhile
    return tuple(found)
