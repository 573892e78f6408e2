"""The one nftables table of an agent: rendered from desired state as text, applied atomically
(`nft -f`: flush and define in one transaction), never edited rule by rule."""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import hashlib
import ipaddress
import json
import os
import socket
import struct
from pathlib import Path

import structlog

from runtime.net import model, netns

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


def _maps(published: tuple[Published, ...]) -> list[str]:
    """Published ports as map elements: `[host ip .] port : container ip . port`, per protocol,
    so a container's ports are elements that come and go with it."""
    out = []
    for proto in ("tcp", "udp"):
        for specific in (True, False):
            key = "ipv4_addr . inet_service" if specific else "inet_service"
            chosen: dict[str, str] = {}
            for p in sorted(published, key=lambda p: (p.port.published, p.port.host_ip, p.ipv4)):
                if p.port.protocol != proto or bool(p.port.host_ip) != specific:
                    continue
                k = f"{p.port.host_ip} . {p.port.published}" if specific else str(p.port.published)
                chosen.setdefault(k, f"{p.ipv4} . {p.port.target}")  # a clash is refused at attach
            name = f"publish_{proto}" + ("_ip" if specific else "")
            out.append(f"\tmap {name} {{\n\t\ttype {key} : ipv4_addr . inet_service")
            if chosen:
                out.append("\t\telements = { " + ", ".join(f"{k} : {v}" for k, v in chosen.items()) + " }")
            out.append("\t}")
    return out


PUBLISH_RULES = [
    # the embedded DNS listens on the gateways: a published port 53 must not take its queries
    "ip daddr @gateways meta l4proto { tcp, udp } th dport 53 return",
    "dnat ip to ip daddr . tcp dport map @publish_tcp_ip",
    "dnat ip to tcp dport map @publish_tcp",
    "dnat ip to ip daddr . udp dport map @publish_udp_ip",
    "dnat ip to udp dport map @publish_udp",
]


def clashes(published: tuple[Published, ...]) -> list[str]:
    """Host ports claimed twice (the same port on any address clashes with every address)."""
    seen: dict[tuple[str, int], list[str]] = {}
    for p in published:
        seen.setdefault((p.port.protocol, p.port.published), []).append(p.port.host_ip)
    out = []
    for (proto, port), ips in sorted(seen.items()):
        if len(ips) > 1 and ("" in ips or len(set(ips)) < len(ips)):
            out.append(f"{port}/{proto}")
    return out


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
    gateways = ", ".join(sorted({n.gateway for n in desired.networks}, key=ipaddress.ip_address))
    out.append("\tset gateways {\n\t\ttype ipv4_addr")
    out.append(f"\t\telements = {{ {gateways} }}" if gateways else "")
    out.append("\t}")
    out.extend(_maps(desired.published))

    def chain(name: str, hook: str, rules: list[str]) -> None:
        out.append(f"\tchain {name} {{")
        if hook:
            out.append(f"\t\t{hook}")
        out.extend(f"\t\t{r}" for r in rules)
        out.append("\t}")

    chain("publish", "", PUBLISH_RULES)
    jump = ["fib daddr type local jump publish"]
    chain("prerouting", f"type nat hook prerouting priority {NAT_PRIORITY}; policy accept;", jump)
    chain("output", f"type nat hook output priority {NAT_PRIORITY}; policy accept;", jump)
    chain("postrouting", "type nat hook postrouting priority 100; policy accept;",
          _postrouting_rules(desired.networks))
    chain("forward", "type filter hook forward priority 0; policy accept;",
          _forward_rules(desired.networks))
    out.append("}")
    return "\n".join(line for line in out if line) + "\n"


_lib = None


def _libnftables() -> ctypes.CDLL:
    """libnftables (what `nft` itself runs on), loaded once: no process per change."""
    global _lib
    if _lib is None:
        lib = ctypes.CDLL(ctypes.util.find_library("nftables") or "libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).restype = ctypes.c_char_p
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        _lib = lib
    return _lib


OUTPUT_JSON = 1 << 4  # libnftables' NFT_CTX_OUTPUT_JSON: what `nft -j` sets


def _nft(ns: Path | None, text: str, flags: int = 0) -> tuple[int, str, str]:
    """Run nft commands inside `ns` (None: here) -> (return code, output, error text)."""
    lib = _libnftables()

    def run():
        # The context's netlink socket is opened here, so in the namespace of this thread.
        ctx = lib.nft_ctx_new(0)
        try:
            if flags:
                lib.nft_ctx_output_set_flags(ctx, flags)
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            rc = lib.nft_run_cmd_from_buffer(ctx, text.encode())
            out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
            err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
            return rc, out, err
        finally:
            lib.nft_ctx_free(ctx)

    return netns.run_in(ns, run)


def apply(ns: Path | None, desired: Ruleset) -> None:
    """Replace the table in `ns` (None: the real host) by `desired`, all at once."""
    text = render(desired)
    rc, _, err = _nft(ns, text)
    if rc != 0:
        raise RuntimeError(f"nft -f in {ns or 'host'} failed: {err.strip()}\n{text}")
    log.info("nft.applied", table=desired.table, netns=str(ns), rules=text.count("\n"))


def run(ns: Path | None, text: str) -> None:
    """Run nft commands in `ns` as one transaction (other modules' small tables of their own)."""
    rc, _, err = _nft(ns, text)
    if rc != 0:
        raise RuntimeError(f"nft -f in {ns or 'host'} failed: {err.strip()}\n{text}")


def remove(ns: Path | None, table: str) -> None:
    """Delete the table; a missing one is success."""
    rc, _, err = _nft(ns, f"table ip {table} {{}}\ndelete table ip {table}\n")
    if rc != 0:
        raise RuntimeError(f"nft delete table {table} in {ns or 'host'} failed: {err.strip()}")
    log.info("nft.removed", table=table, netns=str(ns))


def observe(ns: Path | None, table: str) -> str | None:
    """The table as nft lists it now, or None when there is none."""
    rc, out, _ = _nft(ns, f"list table ip {table}")
    return out if rc == 0 else None


def digest(desired: Ruleset) -> str:
    """What a table rendered from `desired` is, in one string: equal rulesets, equal digests."""
    return hashlib.sha256(render(desired).encode()).hexdigest()


# (namespace inode, table) -> the ruleset generation it was listed at and its digest then
_listed: dict[tuple[int, int, str], tuple[int, str | None]] = {}


def listed_digest(ns: Path | None, table: str) -> str | None:
    """The table as the kernel holds it now (`nft -j list table`, without the handles and
    the listing's own header, which change with every apply but say nothing of the rules),
    in one string; None when there is no table. Listed again only when the namespace's
    ruleset generation moved: every commit there (an apply, a table deleted or a chain
    flushed by hand) moves it, and the agent asks on every pass and every second."""
    nsfile = os.stat(ns if ns is not None else "/proc/thread-self/ns/net")
    key = (nsfile.st_dev, nsfile.st_ino, table)
    gen = generation(ns)
    cached = _listed.get(key)
    if cached is not None and cached[0] == gen:
        return cached[1]
    rc, out, _ = _nft(ns, f"list table ip {table}", OUTPUT_JSON)
    digest: str | None = None
    if rc == 0:
        items = [item for item in json.loads(out).get("nftables", []) if "metainfo" not in item]
        text = json.dumps(_without_handles(items), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(text.encode()).hexdigest()
    # Listed after the generation was read: a commit in between moves it again, so a stale
    # listing is never kept under a generation it does not belong to.
    _listed[key] = (gen, digest)
    return digest


NETLINK_NETFILTER = 12
NFT_MSG_GETGEN = (10 << 8) | 16  # NFNL_SUBSYS_NFTABLES, NFT_MSG_GETGEN
NFTA_GEN_ID = 1
_NLMSG = struct.Struct("=IHHII")


def generation(ns: Path | None) -> int:
    """The ruleset generation of `ns` (None: here): one netfilter netlink round trip instead
    of a listing of the table."""
    sock = netns.run_in(ns, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                                  NETLINK_NETFILTER))
    try:
        body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0)  # nfgenmsg
        sock.send(_NLMSG.pack(_NLMSG.size + len(body), NFT_MSG_GETGEN, 1, 1, 0) + body)
        data = sock.recv(1 << 16)
    finally:
        sock.close()
    length, mtype = _NLMSG.unpack_from(data)[:2]
    if mtype == 2:  # NLMSG_ERROR
        code = -struct.unpack_from("=i", data, _NLMSG.size)[0]
        raise OSError(code, f"nft generation: {os.strerror(code)}")
    offset = _NLMSG.size + 4
    while offset + 4 <= length:
        size, kind = struct.unpack_from("=HH", data, offset)
        if size < 4:
            break
        if kind & 0x3FFF == NFTA_GEN_ID:
            return int(struct.unpack_from(">I", data, offset + 4)[0])
        offset += (size + 3) & ~3
    raise OSError(f"nft generation: no id in the answer of {ns or 'host'}")


def _without_handles(value):
    if isinstance(value, dict):
        return {k: _without_handles(v) for k, v in value.items() if k != "handle"}
    if isinstance(value, list):
        return [_without_handles(v) for v in value]
    return value
