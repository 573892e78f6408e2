"""Published ports from compose syntax to one PortMapping per host port (ranges expanded)."""

from __future__ import annotations

import re

from runtime.net import model

_SHORT = re.compile(
    r"^(?:(?:(?P<ip>\[[0-9a-fA-F:.]+\]|[0-9.]*):)?(?P<published>\d+(?:-\d+)?)?:)?"
    r"(?P<target>\d+(?:-\d+)?)(?:/(?P<proto>tcp|udp))?$"
)


ANY = 0  # no host port given: one is picked from EPHEMERAL when the container is attached
EPHEMERAL = range(32768, 61000)


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
    """Long syntax to mappings; `published` None means any free host port (0: chosen at attach)."""
    if protocol not in ("tcp", "udp"):
        raise PortError(f"{where}.protocol: {protocol!r} is not tcp or udp")
    targets = _span(str(target), f"{where}.target")
    if published in (None, ""):
        ip = host_ip.strip("[]")
        return tuple(model.PortMapping(t, ANY, protocol, "" if ip in ("", "0.0.0.0") else ip)
                     for t in targets)
    hosts = _span(str(published), f"{where}.published")
    if len(targets) == 1 and len(hosts) > 1:
        targets = range(targets[0], targets[0] + 1)
        hosts = hosts[:1]  # docker picks one free port of the range; the first is ours
    elif len(targets) != len(hosts):
        raise PortError(f"{where}: host range {published} and container range {target} differ in size")
    ip = host_ip.strip("[]")
    return tuple(model.PortMapping(t, h, protocol, "" if ip in ("", "0.0.0.0") else ip)
                 for t, h in zip(targets, hosts, strict=True))


def parse(short: str | int, where: str = "ports") -> tuple[model.PortMapping, ...]:
    """Short syntax `[ip:][host[-range]:]container[-range][/proto]`."""
    m = _SHORT.match(str(short))
    if not m:
        raise PortError(f"{where}: {short!r} is not [ip:][host:]container[/tcp|udp]")
    if m["ip"] and ":" in m["ip"]:
        raise PortError(f"{where}: {short!r}: IPv6 host addresses are not supported")
    return expand(m["target"], m["published"], m["proto"] or "tcp", m["ip"] or "", where)


def choose(
    wanted: tuple[model.PortMapping, ...],
    before: tuple[model.PortMapping, ...],
    taken: set[tuple[str, int]],
) -> tuple[model.PortMapping, ...]:
    """Give each ANY port a host port: the one it had `before`, else the lowest free ephemeral."""
    kept = {(p.target, p.protocol, p.host_ip): p.published for p in before}
    used = set(taken)
    out = []
    for p in wanted:
        if p.published == ANY:
            port = kept.get((p.target, p.protocol, p.host_ip))
            if port is None or (p.protocol, port) in used:
                port = next((n for n in EPHEMERAL if (p.protocol, n) not in used), None)
                if port is None:
                    raise PortError(f"ports: no free host port left for {p.target}/{p.protocol}")
            p = model.PortMapping(p.target, port, p.protocol, p.host_ip)
        used.add((p.protocol, p.published))
        out.append(p)
    return tuple(out)
