"""Published ports from compose syntax to one PortMapping per host port (ranges expanded)."""

from __future__ import annotations

import re

from runtime.net import model

_SHORT = re.compile(
    r"^(?:(?:(?P<ip>\[[0-9a-fA-F:.]+\]|[0-9.]*):)?(?P<published>\d+(?:-\d+)?)?:)?"
    r"(?P<target>\d+(?:-\d+)?)(?:/(?P<proto>tcp|udp))?$"
)


class PortError(ValueError):
    """A port that cannot be published; the message says which and why."""


def _span(text: str, where: str) -> range:
    low, _, high = text.partition("-")
    first, last = int(low), int(high or low)
    if not (0 < first <= last <= 65535):
        raise PortError(f"{where}: {text!r} is not a port or range of ports in 1-65535")
    return range(first, last + 1)


def expand(
    target: str | int, published: str | int | None, protocol: str = "tcp", host_ip: str = "",
    where: str = "ports",
) -> tuple[model.PortMapping, ...]:
    """Long syntax to mappings; `published` None means the same port(s) as `target`."""
    if protocol not in ("tcp", "udp"):
        raise PortError(f"{where}.protocol: {protocol!r} is not tcp or udp")
    targets = _span(str(target), f"{where}.target")
    hosts = _span(str(published), f"{where}.published") if published not in (None, "") else targets
    if len(targets) == 1 and len(hosts) > 1:
        targets = range(targets[0], targets[0] + 1)
        hosts = hosts[:1]  # docker picks one free port of the range; the first is ours
    elif len(targets) != len(hosts):
        raise PortError(f"{where}: host range {published} and container range {target} differ in size")
    ip = host_ip.strip("[]")
    return tuple(model.PortMapping(t, h, protocol, "" if ip in ("", "0.0.0.0") else ip)
                 for t, h in zip(targets, hosts))


def parse(short: str | int, where: str = "ports") -> tuple[model.PortMapping, ...]:
    """Short syntax `[ip:][host[-range]:]container[-range][/proto]`."""
    m = _SHORT.match(str(short))
    if not m:
        raise PortError(f"{where}: {short!r} is not [ip:][host:]container[/tcp|udp]")
    if m["ip"] and ":" in m["ip"]:
        raise PortError(f"{where}: {short!r}: IPv6 host addresses are not supported")
    return expand(m["target"], m["published"], m["proto"] or "tcp", m["ip"] or "", where)
