"""The one nftables table of an agent: rendered from desired state as text, applied atomically
(`nft -f`: flush and define in one transaction), never edited rule by rule."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import structlog

from runtime.net import model

log = structlog.get_logger(__name__)

# The nat output hook rejects the `dstnat` keyword; -100 is its number.
NAT_PRIORITY = -100


@dataclasses.dataclass(frozen=True)
class Published:
    """A published port bound to the container address that serves it."""

    ipv4: str
    bridge: str
    port: model.PortMapping


@dataclasses.dataclass(frozen=True)
class Ruleset:
    """Everything the table says: the agent's networks and its published ports."""

    table: str
    networks: tuple[model.Network, ...] = ()
    published: tuple[Published, ...] = ()


def _q(name: str) -> str:
    return f'"{name}"'


def _publish_rules(published: tuple[Published, ...]) -> list[str]:
    rules = []
    key = lambda p: (p.port.protocol, p.port.published, p.port.host_ip, p.ipv4)  # noqa: E731
    for p in sorted(published, key=key):
        match = f"ip daddr {p.port.host_ip} " if p.port.host_ip not in ("", "0.0.0.0") else ""
        rules.append(
            f"{match}{p.port.protocol} dport {p.port.published} "
            f"dnat to {p.ipv4}:{p.port.target}"
        )
    return rules


def _postrouting_rules(networks: tuple[model.Network, ...]) -> list[str]:
    rules = []
    for net in networks:
        br = _q(net.bridge)
        # A container cannot answer 127.0.0.1, and a container reaching a published port of its
        # own network (or itself: hairpin) must see the reply come back through the host.
        rules.append(f"oifname {br} ip saddr 127.0.0.0/8 masquerade")
        rules.append(f"oifname {br} ip saddr {net.subnet} ct status dnat masquerade")
        if not net.internal:
            rules.append(f"ip saddr {net.subnet} oifname != {br} masquerade")
    return rules


def _forward_rules(networks: tuple[model.Network, ...]) -> list[str]:
    bridges = sorted(n.bridge for n in networks)
    if not bridges:
        return []
    rules = ["ct state established,related accept"]
    for net in networks:
        if net.internal:
            rules.append(f"iifname {_q(net.bridge)} oifname != {_q(net.bridge)} drop")
            rules.append(f"oifname {_q(net.bridge)} iifname != {_q(net.bridge)} drop")
    rules.append("ct status dnat accept")
    for br in bridges:
        rules.append(f"iifname {_q(br)} oifname {_q(br)} accept")
    rules.append("iifname @bridges oifname @bridges drop")
    return rules


def render(desired: Ruleset) -> str:
    """The whole table as one `nft -f` transaction that replaces what was there."""
    t = desired.table
    bridges = ", ".join(_q(b) for b in sorted(n.bridge for n in desired.networks))
    out = [f"table ip {t} {{}}", f"delete table ip {t}", f"table ip {t} {{"]
    out.append("\tset bridges {\n\t\ttype ifname")
    out.append(f"\t\telements = {{ {bridges} }}" if bridges else "")
    out.append("\t}")

    def chain(name: str, hook: str, rules: list[str]) -> None:
        out.append(f"\tchain {name} {{")
        if hook:
            out.append(f"\t\t{hook}")
        out.extend(f"\t\t{r}" for r in rules)
        out.append("\t}")

    chain("publish", "", _publish_rules(desired.published))
    jump = ["fib daddr type local jump publish"]
    chain("prerouting", f"type nat hook prerouting priority {NAT_PRIORITY}; policy accept;", jump)
    chain("output", f"type nat hook output priority {NAT_PRIORITY}; policy accept;", jump)
    chain("postrouting", "type nat hook postrouting priority 100; policy accept;",
          _postrouting_rules(desired.networks))
    chain("forward", "type filter hook forward priority 0; policy accept;",
          _forward_rules(desired.networks))
    out.append("}")
    return "\n".join(line for line in out if line) + "\n"


def _nft(ns: Path | None, args: list[str], text: str | None = None) -> subprocess.CompletedProcess:
    prefix = ["nsenter", f"--net={ns}"] if ns else []
    return subprocess.run([*prefix, "nft", *args], input=text, capture_output=True, text=True)


def apply(ns: Path | None, desired: Ruleset) -> None:
    """Replace the table in `ns` (None: the real host) by `desired`, all at once."""
    text = render(desired)
    result = _nft(ns, ["-f", "-"], text)
    if result.returncode != 0:
        raise RuntimeError(f"nft -f in {ns or 'host'} failed: {result.stderr.strip()}\n{text}")
    log.info("nft.applied", table=desired.table, netns=str(ns), rules=text.count("\n"))


def remove(ns: Path | None, table: str) -> None:
    """Delete the table; a missing one is success."""
    result = _nft(ns, ["-f", "-"], f"table ip {table} {{}}\ndelete table ip {table}\n")
    if result.returncode != 0:
        raise RuntimeError(f"nft delete table {table} in {ns or 'host'} failed: {result.stderr.strip()}")
    log.info("nft.removed", table=table, netns=str(ns))


def observe(ns: Path | None, table: str) -> str | None:
    """The table as nft lists it now, or None when there is none."""
    result = _nft(ns, ["list", "table", "ip", table])
    return result.stdout if result.returncode == 0 else None
