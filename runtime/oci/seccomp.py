"""Seccomp profiles in docker's JSON format -> the OCI spec's linux.seccomp for one container.

A profile lists syscall rules, some only for containers holding (or lacking) a capability, for
an architecture or from a kernel version on; docker and podman keep the rules that fit the
container and the host, and hand runc the rest. This module does the same, once per profile
and capability set: the result is cached and shared (read-only) by every container like it.

The default profile is the one Debian's containers-common ships for podman, made as strict as
docker's on what only CAP_SYS_ADMIN should reach (mounts, namespaces, clone with namespace
flags): podman's own allows those to everyone, for nested rootless containers.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
from collections.abc import Mapping
from typing import Any

DEFAULT_PROFILE = "/usr/share/containers/seccomp.json"
UNCONFINED = "unconfined"

ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
           "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
           "SCMP_ACT_NOTIFY")
OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
             "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")

# uname's machine -> libseccomp's name of the native architecture, which a rule's
# `arches` use (docker's goToNative, from the kernel's side).
NATIVE_ARCH = {
    "x86_64": "amd64", "i386": "x86", "i686": "x86", "aarch64": "arm64", "armv7l": "arm",
    "armv8l": "arm", "ppc64le": "ppc64le", "ppc64": "ppc64", "ppc": "ppc", "s390x": "s390x",
    "s390": "s390", "mips64": "mips64", "riscv64": "riscv64",
}
# libseccomp's native name -> the SCMP_ARCH_ constant an `archMap` entry is keyed by.
SECCOMP_ARCH = {
    "x86": "SCMP_ARCH_X86", "amd64": "SCMP_ARCH_X86_64", "arm": "SCMP_ARCH_ARM",
    "arm64": "SCMP_ARCH_AARCH64", "mips64": "SCMP_ARCH_MIPS64", "ppc": "SCMP_ARCH_PPC",
    "ppc64": "SCMP_ARCH_PPC64", "ppc64le": "SCMP_ARCH_PPC64LE", "s390": "SCMP_ARCH_S390",
    "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64",
}

# What docker's default profile lets only a container with CAP_SYS_ADMIN call: with them a
# container makes a user namespace, becomes root in it and mounts what it likes.
SYS_ADMIN_ONLY = (
    "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
    "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
    "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
    "umount2", "unshare",
)
# clone's flags that make a namespace (CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER |
# NEWPID | NEWNET): a plain fork or thread passes none of them.
CLONE_NAMESPACE_FLAGS = 0x7E020000
X32_SYSCALL_BIT = 0x40000000


class ProfileError(ValueError):
    """The profile file cannot be read or is not a seccomp profile in docker's format."""


def for_container(choice: str, capabilities: tuple[str, ...],
                  privileged: bool = False) -> dict[str, Any] | None:
    """linux.seccomp of a container, or None for none. `choice`: "" for the default profile,
    "unconfined", or the absolute path of a profile in docker's format. As docker does, a
    privileged container runs unconfined whatever was asked. The dict returned is shared:
    never change it."""
    if privileged or choice == UNCONFINED:
        return None
    path = choice or DEFAULT_PROFILE
    try:
        st = os.stat(path)
    except OSError as err:
        raise ProfileError(f"seccomp profile {path}: {err.strerror}") from None
    # The file's identity is in the key, so an edited profile is read again.
    return _translated(path, st.st_mtime_ns, st.st_size, not choice, frozenset(capabilities))


@functools.lru_cache(maxsize=64)
def _translated(path: str, _mtime: int, _size: int, default: bool,
                capabilities: frozenset[str]) -> dict[str, Any] | None:
    profile = _load(path, _mtime, _size)
    try:
        if default:
            profile = as_docker_default(profile)
        return translate(profile, capabilities, native_arch(), kernel_version(),
                         missing_arches())
    except ProfileError as err:
        raise ProfileError(f"seccomp profile {path}: {err}") from None


@functools.lru_cache(maxsize=16)
def _load(path: str, _mtime: int, _size: int) -> Mapping[str, Any]:
    try:
        with open(path, "rb") as file:
            profile = json.load(file)
    except OSError as err:
        raise ProfileError(f"seccomp profile {path}: {err.strerror}") from None
    except ValueError as err:
        raise ProfileError(f"seccomp profile {path}: not valid JSON: {err}") from None
    if not isinstance(profile, dict):
        raise ProfileError(f"seccomp profile {path}: expected a JSON object")
    return profile


def as_docker_default(profile: Mapping[str, Any]) -> dict[str, Any]:
    """The profile with docker's rule for SYS_ADMIN_ONLY: whatever it allows every container
    of those is allowed only with CAP_SYS_ADMIN, refused with EPERM without it; clone only
    without namespace flags, and clone3 (whose flags seccomp cannot see) answers ENOSYS, so
    libc falls back to clone."""
    gated = set(SYS_ADMIN_ONLY)
    rules: list[dict[str, Any]] = []
    taken: set[str] = set()
    with_admin: set[str] = set()
    without_admin: set[str] = set()  # what the profile already says per case
    for rule in profile.get("syscalls") or ():
        names = _names(rule)
        includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
        if rule.get("action") == "SCMP_ACT_ALLOW" and not includes.get("caps"):
            kept = [n for n in names if n not in gated]
            taken.update(n for n in names if n in gated)
            if not kept:
                continue
            rule = {k: v for k, v in rule.items() if k != "name"} | {"names": kept}
        elif includes.get("caps") == ["CAP_SYS_ADMIN"] and not rule.get("args"):
            with_admin.update(names)
        elif "CAP_SYS_ADMIN" in (excludes.get("caps") or ()) and not rule.get("args"):
            without_admin.update(names)
        rules.append(rule)
    sys_admin = {"caps": ["CAP_SYS_ADMIN"]}
    if taken - with_admin:
        rules.append({"names": sorted(taken - with_admin), "action": "SCMP_ACT_ALLOW",
                      "includes": sys_admin})
    refused = taken - without_admin - {"clone", "clone3"}
    if refused:
        rules.append({"names": sorted(refused), "action": "SCMP_ACT_ERRNO",
                      "errnoRet": errno.EPERM, "excludes": sys_admin})
    if "clone" in taken:
        rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
                                "op": "SCMP_CMP_MASKED_EQ"}],
                      "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}})
        # s390 passes clone's flags second.
        rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 1, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
                                "op": "SCMP_CMP_MASKED_EQ"}],
                      "includes": {"arches": ["s390", "s390x"]},
                      "excludes": {"caps": ["CAP_SYS_ADMIN"]}})
    if "clone3" in taken:
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS,
                      "excludes": {"caps": ["CAP_SYS_ADMIN"]}})
    return {**profile, "syscalls": rules}


def translate(profile: Mapping[str, Any], capabilities: frozenset[str] | set[str], arch: str,
              kernel: tuple[int, int], missing: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """docker's and podman's rules (setupSeccomp): keep a rule when the container holds every
    capability of its `includes.caps` and none of its `excludes.caps`, the host's arch and
    kernel fit its `arches` and `minKernel`; `archMap` gives the arch and its sub-arches,
    less those in `missing` (the kernel cannot run them). A profile with neither a default
    action nor rules means no filter."""
    if not profile.get("defaultAction") and not profile.get("syscalls"):
        return None
    if profile.get("architectures") and profile.get("archMap"):
        raise ProfileError("'architectures' and 'archMap' were both given; use one")
    out: dict[str, Any] = {"defaultAction": _action(profile.get("defaultAction"), "defaultAction")}
    default_errno = _errno(profile.get("defaultErrnoRet"), profile.get("defaultErrno"),
                           "defaultErrnoRet")
    if default_errno is not None:
        out["defaultErrnoRet"] = default_errno
    arches = list(profile.get("architectures") or ())
    for entry in profile.get("archMap") or ():
        if entry.get("architecture") == SECCOMP_ARCH.get(arch):
            arches = [entry["architecture"], *(entry.get("subArchitectures") or ())]
            break
    arches = [a for a in arches if a not in missing]
    if arches:
        out["architectures"] = arches
    if profile.get("flags"):
        out["flags"] = list(profile["flags"])
    syscalls = []
    for i, rule in enumerate(profile.get("syscalls") or ()):
        if not isinstance(rule, dict):
            raise ProfileError(f"syscalls[{i}]: expected an object")
        if _applies(rule, capabilities, arch, kernel, f"syscalls[{i}]"):
            syscalls.append(_syscall(rule, f"syscalls[{i}]"))
    if syscalls:
        out["syscalls"] = syscalls
    return out


def _applies(rule: Mapping[str, Any], capabilities, arch: str, kernel: tuple[int, int],
             where: str) -> bool:
    includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
    if arch in (excludes.get("arches") or ()):
        return False
    if any(c in capabilities for c in excludes.get("caps") or ()):
        return False
    if excludes.get("minKernel") and kernel >= _kernel(excludes["minKernel"], where):
        return False
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    if any(c not in capabilities for c in includes.get("caps") or ()):
        return False
    return not (includes.get("minKernel") and kernel < _kernel(includes["minKernel"], where))


def _names(rule: Mapping[str, Any]) -> list[str]:
    if rule.get("name") and rule.get("names"):
        raise ProfileError("'name' and 'names' were both given in a rule; use one")
    return [rule["name"]] if rule.get("name") else list(rule.get("names") or ())


def _syscall(rule: Mapping[str, Any], where: str) -> dict[str, Any]:
    try:
        names = _names(rule)
    except ProfileError as err:
        raise ProfileError(f"{where}: {err}") from None
    out: dict[str, Any] = {"names": names, "action": _action(rule.get("action"), f"{where}.action")}
    number = _errno(rule.get("errnoRet"), rule.get("errno"), f"{where}.errnoRet")
    if number is not None:
        out["errnoRet"] = number
    args = []
    for j, arg in enumerate(rule.get("args") or ()):
        op = arg.get("op")
        if op not in OPERATORS:
            raise ProfileError(f"{where}.args[{j}].op: unknown operator {op!r}")
        args.append({"index": int(arg.get("index", 0)), "value": int(arg.get("value", 0)),
                     "valueTwo": int(arg.get("valueTwo", 0)), "op": op})
    if args:
        out["args"] = args
    return out


def _action(value, where: str) -> str:
    if value not in ACTIONS:
        raise ProfileError(f"{where}: unknown action {value!r}")
    return value


def _errno(number, name, where: str) -> int | None:
    """`errnoRet` (a number) wins over `errno` (a name, as containers-common also writes it)."""
    if number is not None:
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise ProfileError(f"{where}: expected a positive errno number, got {number!r}")
        return number
    if name:
        found = getattr(errno, str(name), None)
        if not isinstance(found, int):
            raise ProfileError(f"{where}: unknown errno name {name!r}")
        return found
    return None


def _kernel(text, where: str) -> tuple[int, int]:
    try:
        major, minor = str(text).split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        raise ProfileError(f"{where}: minKernel {text!r}: expected MAJOR.MINOR") from None


@functools.cache
def native_arch() -> str:
    machine = os.uname().machine
    return NATIVE_ARCH.get(machine, machine)


@functools.cache
def missing_arches() -> frozenset[str]:
    """Sub-architectures of the archMap that this kernel cannot run. Each architecture in a
    filter costs runc some 7 ms of CPU per container to compile; x32 is seldom built into a
    kernel (CONFIG_X86_X32_ABI), and without it no x32 syscall can be made, so it is left
    out. The test: getpid (39) by x32's number, ENOSYS where x32 is missing."""
    if native_arch() != "amd64":
        return frozenset()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(ctypes.c_long(X32_SYSCALL_BIT | 39)) == -1 and ctypes.get_errno() == errno.ENOSYS:
        return frozenset({"SCMP_ARCH_X32"})
    return frozenset()


@functools.cache
def kernel_version() -> tuple[int, int]:
    """The running kernel's MAJOR.MINOR, as docker compares `minKernel` (the patch level and
    any suffix do not count)."""
    release = os.uname().release
    parts = release.split(".")
    return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
