"""Capability sets: Docker's default set, cap_add/cap_drop over it, and everything for privileged."""

from __future__ import annotations

# moby's oci/caps/defaults.go: the set every container gets unless told otherwise.
DEFAULT = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# Every capability of linux/capability.h up to CAP_CHECKPOINT_RESTORE (40).
ALL = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)


class CapabilityError(ValueError):
    pass


def normalize(name: str) -> str:
    """`net_raw`, `NET_RAW` and `CAP_NET_RAW` all name CAP_NET_RAW; `ALL` stays ALL."""
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    full = upper if upper.startswith("CAP_") else "CAP_" + upper
    if full not in ALL:
        raise CapabilityError(f"unknown capability {name!r}")
    return full


def effective(
    cap_add: tuple[str, ...], cap_drop: tuple[str, ...], privileged: bool, bounding: tuple[str, ...] = ALL
) -> tuple[str, ...]:
    """Docker's rule: start from the default set (or ALL), drop, then add; ALL works on both sides.

    "ALL" and privileged mean all the host can grant: `bounding` is our own bounding set
    (a capability we lack cannot be given, and runc would fail asking for it).
    """
    if privileged:
        return tuple(c for c in ALL if c in bounding)
    add = {normalize(c) for c in cap_add}
    drop = {normalize(c) for c in cap_drop}
    base = set() if "ALL" in drop else set(DEFAULT) - drop
    base |= set(bounding) if "ALL" in add else add
    return tuple(c for c in ALL if c in base)


def from_mask(mask: int) -> tuple[str, ...]:
    """Names of the bits set in a capability mask as /proc/<pid>/status shows it."""
    return tuple(name for bit, name in enumerate(ALL) if mask >> bit & 1)
