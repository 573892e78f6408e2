"""Short syntax -> long syntax on plain data (ports, volumes, depends_on, environment...).

Runs on each file before merging, so the merge rules see one shape per attribute. A value
whose type is wrong is left as it is: the model then says what it should be.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex

from reconciler.spec import errors

LIST_OR_DICT = ("annotations", "environment", "labels", "sysctls")
STRING_OR_LIST = ("dns", "dns_search", "tmpfs", "label_file")
_PORT_RE = re.compile(r"^(\d+)(?:-(\d+))?$")
_VOLUME_MODES = {"ro", "rw", "z", "Z", "nocopy", "cached", "delegated", "consistent",
                 "shared", "rshared", "slave", "rslave", "private", "rprivate", "copy"}


class ShortSyntaxError(Exception):
    """A short form that cannot be read; `sub` is the path below the attribute."""

    def __init__(self, message: str, sub: tuple = ()) -> None:
        super().__init__(message)
        self.sub = sub


def list_or_dict(value, bare=None):
    """['A=1', 'B'] -> {'A': '1', 'B': bare}; a mapping passes through."""
    if not isinstance(value, list):
        return value
    out = {}
    for item in value:
        if not isinstance(item, str):
            return value  # the model names the bad item's type
        key, sep, val = item.partition("=")
        out[key] = val if sep else bare
    return out


def string_or_list(value):
    return [value] if isinstance(value, str) else value


def command(value):
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as err:
            raise ShortSyntaxError(f"cannot split {value!r} into words: {err}") from None
    return value


def _is_template(text: str, lenient: bool) -> bool:
    return lenient and "$" in text


def _port_range(text: str, what: str, full: str) -> tuple[int, int]:
    match = _PORT_RE.match(text)
    if not match:
        raise ShortSyntaxError(f'"{full}" is not a valid port mapping ({what} {text!r})')
    low = int(match.group(1))
    high = int(match.group(2) or low)
    if low < 1 or high < low or high > 65535:
        raise ShortSyntaxError(f'"{full}" is not a valid port mapping (bad range {text!r})')
    return low, high


def _split_port(text: str) -> tuple[str | None, str | None, str]:
    """'[::1]:80:8080' -> ('::1', '80', '8080'); '8080' -> (None, None, '8080')."""
    host_ip = None
    rest = text
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0 or rest[end + 1:end + 2] != ":":
            raise ShortSyntaxError(f'"{text}" is not a valid port mapping')
        host_ip, rest = rest[1:end], rest[end + 2:]
        published, sep, target = rest.rpartition(":")
        if not sep:
            raise ShortSyntaxError(f'"{text}" is not a valid port mapping')
        return host_ip, published, target
    parts = rest.split(":")
    if len(parts) == 1:
        return None, None, parts[0]
    if len(parts) == 2:
        return None, parts[0], parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    # An IPv6 host address without brackets: everything before the last two parts.
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def port(item, lenient: bool = False) -> list:
    """One `ports:` entry -> long entries (a range of targets gives one entry per port)."""
    if isinstance(item, bool) or not isinstance(item, (int, str)):
        return [item]
    if isinstance(item, int):
        return [{"target": item, "protocol": "tcp", "mode": "ingress"}]
    if _is_template(item, lenient):
        return [item]
    text, _, protocol = item.partition("/")
    protocol = protocol or "tcp"
    if protocol not in ("tcp", "udp", "sctp"):
        raise ShortSyntaxError(f'"{item}" is not a valid port mapping (protocol {protocol!r})')
    host_ip, published, target = _split_port(text)
    if host_ip is not None:
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise ShortSyntaxError(f'"{item}" is not a valid port mapping '
                                   f"({host_ip!r} is not an IP address)") from None
    t_low, t_high = _port_range(target, "container port", item)
    host_range = _port_range(published, "host port", item) if published else None
    count = t_high - t_low + 1
    if host_range is not None and (host_range[1] - host_range[0] + 1) not in (1, count) and count != 1:
        raise ShortSyntaxError(f'"{item}" is not a valid port mapping '
                               "(host and container ranges differ in size)")
    out = []
    for i in range(count):
        entry = {"mode": "ingress", "target": t_low + i, "protocol": protocol}
        if host_ip:
            entry["host_ip"] = host_ip
        if host_range is not None:
            p_low, p_high = host_range
            if count == 1:
                entry["published"] = published
            else:
                entry["published"] = str(p_low + i if p_high != p_low else p_low)
        out.append(entry)
    return out


def abs_path(path: str, base: str, home: str | None) -> str:
    if path.startswith("~"):
        path = (home or os.path.expanduser("~")) + path[1:]
    return os.path.normpath(os.path.join(base, path))


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or source == "."


def volume(item, base: str, home: str | None, lenient: bool = False):
    """One `volumes:` entry -> long form, with bind sources made absolute."""
    if isinstance(item, dict):
        if item.get("type") == "bind" and isinstance(item.get("source"), str) \
                and item["source"] and not _is_template(item["source"], lenient):
            item = dict(item, source=abs_path(item["source"], base, home))
        return item
    if not isinstance(item, str) or _is_template(item, lenient):
        return item
    parts = item.split(":")
    if len(parts) > 3 or not all(parts):
        raise ShortSyntaxError(f'"{item}" is not a valid volume (SOURCE:TARGET[:MODE]; '
                               "empty section between colons?)")
    if len(parts) == 1:
        return {"type": "volume", "target": parts[0]}
    source, target = parts[0], parts[1]
    modes = parts[2].split(",") if len(parts) == 3 else []
    bad = [m for m in modes if m not in _VOLUME_MODES]
    if bad:
        raise ShortSyntaxError(f'"{item}" is not a valid volume (unknown mode {bad[0]!r})')
    entry: dict = {"target": target}
    if _looks_like_path(source):
        entry.update(type="bind", source=abs_path(source, base, home))
        bind: dict = {"create_host_path": True}
        for m in modes:
            if m in ("z", "Z"):
                bind["selinux"] = m
            elif m.lstrip("r") in ("shared", "slave", "private"):
                bind["propagation"] = m
        entry["bind"] = bind
    else:
        entry.update(type="volume", source=source)
        if "nocopy" in modes:
            entry["volume"] = {"nocopy": True}
    if "ro" in modes:
        entry["read_only"] = True
    for m in modes:
        if m in ("cached", "delegated", "consistent"):
            entry["consistency"] = m
    return entry


def depends_on(value):
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return {name: {"condition": "service_started", "required": True} for name in value}
    if isinstance(value, dict):
        return {k: ({"required": True, **v} if isinstance(v, dict) else v)
                for k, v in value.items()}
    return value


def networks(value):
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return {name: None for name in value}
    return value


def extra_hosts(value):
    """'host:ip' / 'host=ip' entries or a mapping -> {host: [ip, ...]}."""
    if isinstance(value, dict):
        return {k: ([v] if isinstance(v, str) else v) for k, v in value.items()}
    if not isinstance(value, list):
        return value
    out: dict = {}
    for i, item in enumerate(value):
        if not isinstance(item, str):
            return value
        host, sep, addr = item.partition("=")
        if not sep:
            host, sep, addr = item.partition(":")
        if not sep or not host:
            raise ShortSyntaxError(f'"{item}" is not a valid host entry (HOST:IP)', (i,))
        out.setdefault(host, []).append(addr.strip("[]"))
    return out


def secrets(value):
    if isinstance(value, list):
        return [{"source": v} if isinstance(v, str) else v for v in value]
    return value


def ulimits(value):
    if isinstance(value, dict):
        return {k: ({"soft": v, "hard": v} if (isinstance(v, int) and not isinstance(v, bool))
                    or (isinstance(v, str) and "$" not in v)
                    else v) for k, v in value.items()}
    return value


def env_files(value, base: str, home: str | None):
    value = string_or_list(value)
    if not isinstance(value, list):
        return value
    out = []
    for item in value:
        if isinstance(item, str):
            item = {"path": item, "required": True}
        elif isinstance(item, dict):
            item = {"required": True, **item}
        if isinstance(item, dict) and isinstance(item.get("path"), str):
            item["path"] = abs_path(item["path"], base, home)
        out.append(item)
    return out


def device(item):
    if not isinstance(item, str):
        return item
    parts = item.split(":")
    if len(parts) > 3 or not parts[0]:
        raise ShortSyntaxError(f'"{item}" is not a valid device (HOST[:CONTAINER[:PERMISSIONS]])')
    out = {"source": parts[0], "target": parts[1] if len(parts) > 1 else parts[0]}
    if len(parts) == 3:
        out["permissions"] = parts[2]
    return out


def place_error(err: ShortSyntaxError, place_of, path: tuple) -> errors.SpecError:
    return errors.SpecError(str(err), place_of(path + err.sub))
