"""Short, stable Linux names derived from a hash: links are 15 bytes at most."""

from __future__ import annotations

import hashlib

IFNAMSIZ = 15


def digest(*parts: str, length: int) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def bridge(agent: str, network: str) -> str:
    """The bridge of `network` for one agent: `pcb` + 12 hex digits."""
    return "pcb" + digest(agent, network, length=12)


def host_veth(agent: str, container: str, network: str) -> str:
    """The host end of a container's veth in `network`: `pcv` + 12 hex digits."""
    return "pcv" + digest(agent, container, network, length=12)


def container_ifname(index: int) -> str:
    return f"eth{index}"


def netns(container: str) -> str:
    """The file name of a container's namespace under `<run_dir>/netns/`."""
    return "c" + digest(container, length=16)


def table(agent: str) -> str:
    """The nftables table of one agent (nft names may be long, but keep them readable)."""
    safe = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in agent)
    return f"pcompose_{safe}"


def mac_for(ipv4: str) -> str:
    """A locally administered MAC derived from the address, as docker does (02:42:a.b.c.d)."""
    octets = [int(x) for x in ipv4.split(".")]
    return "02:42:" + ":".join(f"{o:02x}" for o in octets)
