"""Address management, persisted under the state root and file-locked: subnets per network, one
address per (network, container), never the same address twice."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import ipaddress
import json
from pathlib import Path

from runtime import statefiles
from runtime.net import names


class IpamError(ValueError):
    """A request that cannot be met; nothing was changed."""


@dataclasses.dataclass(frozen=True)
class Lease:
    network: str
    owner: str
    ipv4: str
    mac: str


@dataclasses.dataclass(frozen=True)
class Pool:
    """One network's reservation: its subnet, gateway and the leases in it."""

    network: str
    subnet: str
    gateway: str
    ip_range: str | None
    leases: tuple[Lease, ...]


def path(state_root: Path) -> Path:
    return Path(state_root) / "net" / "ipam.json"


@contextlib.contextmanager
def _locked(state_root: Path):
    """Yield the IPAM document under an exclusive lock; write it back if the block succeeds."""
    file = path(state_root)
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file.with_suffix(".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = file.read_text() if file.exists() else json.dumps({"networks": {}})
        doc = json.loads(before)
        yield doc
        # The file holds exactly this rendering, so one dump tells a change and is what we write
        # (no indent: that takes json's slow pure-Python encoder, and this runs per attach).
        after = json.dumps(doc, sort_keys=True)
        if after != before:
            statefiles.write(file, after)  # 0600, as the other network records


def pick_subnet(
    pools: tuple[tuple[str, int], ...], taken: list[str], avoid: list[str]
) -> str:
    """The first subnet of the pools that overlaps neither a taken subnet nor a host route."""
    blocked = [ipaddress.ip_network(n) for n in [*taken, *avoid]]
    for base, prefix in pools:
        for candidate in ipaddress.ip_network(base).subnets(new_prefix=prefix):
            if not any(candidate.overlaps(b) for b in blocked):
                return str(candidate)
    raise IpamError(f"default pools {[p for p, _ in pools]}: no free subnet left")


def _check_subnet(name: str, subnet: str, gateway: str | None, ip_range: str | None) -> str:
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as exc:
        raise IpamError(f"networks.{name}.ipam.config.subnet: {exc}") from None
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 30:
        raise IpamError(
            f"networks.{name}.ipam.config.subnet: {subnet} is not an IPv4 subnet of /30 or larger")
    span = ipaddress.ip_network(ip_range) if ip_range else None
    if span is not None and not (isinstance(span, ipaddress.IPv4Network) and span.subnet_of(net)):
        raise IpamError(f"networks.{name}.ipam.config.ip_range: {ip_range} is not inside {subnet}")
    if gateway is None:
        return str(next(net.hosts()))
    if ipaddress.ip_address(gateway) not in list(net.hosts()):
        raise IpamError(f"networks.{name}.ipam.config.gateway: {gateway} is not a host address of {subnet}")
    return gateway


def reserve_network(
    state_root: Path,
    name: str,
    subnet: str | None,
    gateway: str | None,
    ip_range: str | None,
    pools: tuple[tuple[str, int], ...],
    host_routes: list[str],
    aux_addresses: tuple[str, ...] = (),
) -> Pool:
    """Reserve a subnet for `name` (the given one, or one from the pools); the same again is a
    no-op. `aux_addresses` are never handed out."""
    if (gateway or ip_range or aux_addresses) and not subnet:
        raise IpamError(f"networks.{name}.ipam.config: gateway, ip_range and aux_addresses need a subnet")
    with _locked(state_root) as doc:
        nets = doc["networks"]
        if name in nets:
            have = nets[name]
            if (subnet and subnet != have["subnet"]) or (gateway and gateway != have["gateway"]):
                raise IpamError(
                    f"networks.{name}: already exists with subnet {have['subnet']} gateway "
                    f"{have['gateway']}; remove it to change its addresses"
                )
            return _pool(name, have)
        others = [n["subnet"] for n in nets.values()]
        if subnet:
            gateway = _check_subnet(name, subnet, gateway, ip_range)
            clash = [o for o in others if ipaddress.ip_network(o).overlaps(ipaddress.ip_network(subnet))]
            if clash:
                raise IpamError(f"networks.{name}.ipam.config.subnet: {subnet} overlaps {clash[0]}")
        else:
            subnet = pick_subnet(pools, others, host_routes)
            gateway = _check_subnet(name, subnet, None, None)
        for aux in aux_addresses:
            if ipaddress.ip_address(aux) not in ipaddress.ip_network(subnet):
                raise IpamError(f"networks.{name}.ipam.config.aux_addresses: {aux} is not inside {subnet}")
        nets[name] = {"subnet": subnet, "gateway": gateway, "ip_range": ip_range, "leases": {},
                      "aux": sorted(aux_addresses)}
        return _pool(name, nets[name])


def release_network(state_root: Path, name: str) -> None:
    with _locked(state_root) as doc:
        doc["networks"].pop(name, None)


def allocate(
    state_root: Path, network: str, owner: str, ipv4: str | None = None, mac: str | None = None
) -> Lease:
    """Lease an address in `network` to `owner` (the wanted one, or the first free); idempotent."""
    with _locked(state_root) as doc:
        net = doc["networks"].get(network)
        if net is None:
            raise IpamError(f"network {network}: no subnet reserved")
        leases = net["leases"]
        for ip, held in leases.items():
            if held["owner"] == owner and (ipv4 is None or ipv4 == ip):
                return Lease(network, owner, ip, held["mac"])
        ip = _static(network, net, owner, ipv4) if ipv4 else _first_free(network, net)
        mac = mac or names.mac_for(ip)
        taken_mac = [h["owner"] for h in leases.values() if h["mac"] == mac.lower()]
        if taken_mac:
            raise IpamError(f"{owner}: networks.{network}.mac_address {mac} is used by {taken_mac[0]}")
        for old_ip in [i for i, h in leases.items() if h["owner"] == owner]:
            del leases[old_ip]
        leases[ip] = {"owner": owner, "mac": mac.lower()}
        return Lease(network, owner, ip, mac.lower())


def _static(network: str, net: dict, owner: str, ipv4: str) -> str:
    subnet = ipaddress.ip_network(net["subnet"])
    try:
        addr = ipaddress.ip_address(ipv4)
    except ValueError as exc:
        raise IpamError(f"{owner}: networks.{network}.ipv4_address: {exc}") from None
    if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
        raise IpamError(f"{owner}: networks.{network}.ipv4_address {ipv4} is not a host address of {subnet}")
    if ipv4 == net["gateway"]:
        raise IpamError(f"{owner}: networks.{network}.ipv4_address {ipv4} is the gateway")
    if ipv4 in net.get("aux", ()):
        raise IpamError(f"{owner}: networks.{network}.ipv4_address {ipv4} is an aux address")
    held = net["leases"].get(ipv4)
    if held and held["owner"] != owner:
        raise IpamError(f"{owner}: networks.{network}.ipv4_address {ipv4} is used by {held['owner']}")
    return ipv4


def _first_free(network: str, net: dict) -> str:
    space = ipaddress.ip_network(net["ip_range"] or net["subnet"])
    subnet = ipaddress.ip_network(net["subnet"])
    for addr in space:
        ip = str(addr)
        if addr in (subnet.network_address, subnet.broadcast_address):
            continue
        if ip != net["gateway"] and ip not in net["leases"] and ip not in net.get("aux", ()):
            return ip
    raise IpamError(f"network {network}: no free address left in {space}")


def release(state_root: Path, network: str, owner: str) -> None:
    """Give back `owner`'s address in `network`; nothing held is success."""
    with _locked(state_root) as doc:
        net = doc["networks"].get(network)
        if net:
            for ip in [i for i, h in net["leases"].items() if h["owner"] == owner]:
                del net["leases"][ip]


def release_all(state_root: Path, owner: str) -> None:
    """Give back every address `owner` holds, in any network."""
    if not path(state_root).exists():
        return
    with _locked(state_root) as doc:
        for net in doc["networks"].values():
            for ip in [i for i, h in net["leases"].items() if h["owner"] == owner]:
                del net["leases"][ip]


def observe(state_root: Path) -> dict[str, Pool]:
    """Every reservation on disk, by network name."""
    file = path(state_root)
    if not file.exists():
        return {}
    with _locked(state_root) as doc:
        return {name: _pool(name, net) for name, net in doc["networks"].items()}


def _pool(name: str, net: dict) -> Pool:
    leases = tuple(
        Lease(name, h["owner"], ip, h["mac"])
        for ip, h in sorted(net["leases"].items(), key=lambda kv: ipaddress.ip_address(kv[0]))
    )
    return Pool(name, net["subnet"], net["gateway"], net["ip_range"], leases)
