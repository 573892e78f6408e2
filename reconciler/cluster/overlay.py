"""Cluster-scoped overlay networks: made and removed in etcd (`network create -d overlay`), and
kept on this host by a watcher: its subnet of each network (claimed once, kept without a
lease), its VTEP and its containers' endpoints under the node lease, the peers' fdb, neighbour
and route entries in the kernel, the VXLAN member filter, and the other hosts' names for the
embedded DNS.

The watcher lists at a revision R and watches from R+1 into an in-memory copy of the cluster's
keys; on compaction it lists again. The kernel is diffed against that copy on every change and
every second (an entry deleted by hand comes back), never flushed; while etcd is away the copy
(and so every route and DNS record) stays as it was last known."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import re
import secrets
import string
import time
from collections.abc import Iterable
from typing import Any

import structlog

from controllers import context, networks, overlay as local_overlay
from reconciler.cluster import etcd, keys, membership
from runtime.net import dns, vxlan

log = structlog.get_logger(__name__)

POOL = ipaddress.IPv4Network("10.128.0.0/9")  # where networks without --subnet get their /16
NETWORK_PREFIX = 16
HOST_PREFIX = 24  # a host's share of a network, unless the network is too small for it
FIRST_VNI = 4096
CHECK_EVERY = 1.0  # the kernel is compared with the copy this often: repairs within 2 s
ENSURE_EVERY = 10.0  # devices, bridges and the member filter made again this often
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ID_CHARS = string.ascii_lowercase + string.digits


class OverlayError(Exception):
    """A cluster network verb refused: a taken name or subnet, an unknown network, one in use."""


@dataclasses.dataclass(frozen=True)
class Network:
    """A cluster network as etcd keeps it under networks/<id>/spec."""

    id: str
    name: str
    cidr: str
    vni: int
    host_prefix: int
    attachable: bool = True
    created: float = 0.0
    labels: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "cidr": self.cidr, "vni": self.vni,
                "host_prefix": self.host_prefix, "attachable": self.attachable,
                "created": self.created, "labels": dict(self.labels)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Network:
        return cls(str(data["id"]), str(data["name"]), str(data["cidr"]), int(data["vni"]),
                   int(data["host_prefix"]), bool(data.get("attachable", True)),
                   float(data.get("created", 0.0)),
                   tuple(sorted((str(k), str(v)) for k, v in
                                (data.get("labels") or {}).items())))


def _host_prefix(cidr: ipaddress.IPv4Network) -> int:
    """A /24 per host out of a /16; a smaller network is split in 16 parts at most."""
    return HOST_PREFIX if cidr.prefixlen <= HOST_PREFIX - 4 else min(cidr.prefixlen + 4, 28)


def _parse(kv: etcd.KV) -> Any:
    try:
        return kv.json()
    except ValueError:
        return None


async def list_networks(client: etcd.Client) -> list[Network]:
    _, kvs = await client.range(keys.NETWORKS)
    return sorted(_networks({kv.key: kv for kv in kvs}).values(), key=lambda n: n.name)


def _networks(state: dict[str, etcd.KV]) -> dict[str, Network]:
    out = {}
    for key, kv in state.items():
        parsed = keys.parse_network_key(key)
        if parsed is None or parsed[1] != "spec":
            continue
        data = _parse(kv)
        try:
            out[parsed[0]] = Network.from_json(data)
        except (KeyError, TypeError, ValueError):
            log.warning("overlay.bad_spec", key=key)
    return out


async def create_network(client: etcd.Client, name: str, *, subnet: str | None = None,
                         attachable: bool = True,
                         labels: dict[str, str] | None = None) -> Network:
    """A new cluster network: its name and VNI claimed in one transaction with its spec, so two
    admins creating at once get one network each or a refusal, never a shared VNI."""
    if not NAME.match(name) or len(name) > 64:
        raise OverlayError(f"invalid network name {name!r}: use letters, digits, '_', '.', "
                           "'-', starting with a letter or digit")
    wanted = None
    if subnet:
        try:
            wanted = ipaddress.IPv4Network(subnet, strict=True)
        except ValueError as error:
            raise OverlayError(f"invalid subnet {subnet}: {error}") from None
        if wanted.prefixlen > 28:
            raise OverlayError(f"subnet {subnet} is too small for an overlay (a /28 at most)")
    for _ in range(10):
        existing = await list_networks(client)
        if any(n.name == name for n in existing):
            raise OverlayError(f"network with name {name} already exists")
        taken = [ipaddress.IPv4Network(n.cidr) for n in existing]
        if wanted is not None:
            clash = [str(t) for t in taken if t.overlaps(wanted)]
            if clash:
                raise OverlayError(f"subnet {wanted} overlaps network subnet {clash[0]}")
            cidr = wanted
        else:
            free = (c for c in POOL.subnets(new_prefix=NETWORK_PREFIX)
                    if not any(c.overlaps(t) for t in taken))
            found = next(free, None)
            if found is None:
                raise OverlayError(f"no free /{NETWORK_PREFIX} left in {POOL}")
            cidr = found
        _, vni_kvs = await client.range(keys.VNIS)
        used = {int(kv.key[len(keys.VNIS):]) for kv in vni_kvs
                if kv.key[len(keys.VNIS):].isdigit()}
        vni = next(v for v in range(FIRST_VNI, 1 << 24) if v not in used)
        net = Network("".join(secrets.choice(_ID_CHARS) for _ in range(25)), name, str(cidr),
                      vni, _host_prefix(cidr), attachable, time.time(),
                      tuple(sorted((labels or {}).items())))
        won, _ = await client.txn(
            [etcd.compare(keys.network_name(name), "create", "=", 0),
             etcd.compare(keys.vni(vni), "create", "=", 0)],
            [etcd.put_op(keys.network_name(name), net.id), etcd.put_op(keys.vni(vni), net.id),
             etcd.put_op(keys.network_spec(net.id), json.dumps(net.to_json()))])
        if won:
            log.info("overlay.network_created", network=name, id=net.id, cidr=net.cidr, vni=vni)
            return net
    raise OverlayError(f"network {name}: the cluster's networks kept changing; try again")


def find(networks: Iterable[Network], ref: str) -> Network:
    nets = list(networks)
    for match in ([n for n in nets if n.name == ref], [n for n in nets if n.id == ref],
                  [n for n in nets if ref and n.id.startswith(ref)]):
        if len(match) == 1:
            return match[0]
        if len(match) > 1:
            raise OverlayError(f"network {ref} is ambiguous ({len(match)} matches)")
    raise OverlayError(f"network {ref} not found")


@dataclasses.dataclass(frozen=True)
class Detail:
    """A network with what the hosts hold of it: subnets per node and endpoints."""

    network: Network
    subnets: tuple[tuple[str, str], ...]  # (node id, subnet)
    endpoints: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {**self.network.to_json(), "subnets": dict(self.subnets),
                "endpoints": list(self.endpoints)}


async def details(client: etcd.Client) -> list[Detail]:
    _, kvs = await client.range(keys.NETWORKS)
    state = {kv.key: kv for kv in kvs}
    out = []
    for net in sorted(_networks(state).values(), key=lambda n: n.name):
        view = _View(state, net)
        out.append(Detail(net, tuple(sorted((node, cidr) for cidr, node in view.claims.items())),
                          tuple(view.endpoints.values())))
    return out


async def remove_network(client: etcd.Client, ref: str) -> Network:
    """Forget a cluster network no container of any host uses; each host then takes its
    device and bridge away."""
    net = find(await list_networks(client), ref)
    _, eps = await client.range(keys.network(net.id) + "endpoints/")
    if eps:
        raise OverlayError(f"error while removing network: network {net.name} has "
                           f"{len(eps)} active endpoint{'s' if len(eps) != 1 else ''}")
    await client.txn([], [etcd.delete_op(keys.network(net.id), prefix=True),
                          etcd.delete_op(keys.network_name(net.name)),
                          etcd.delete_op(keys.vni(net.vni))])
    log.info("overlay.network_removed", network=net.name, id=net.id)
    return net


class _View:
    """One network's keys in a copy of the store: subnet claims, VTEPs, endpoints."""

    def __init__(self, state: dict[str, etcd.KV], net: Network) -> None:
        self.claims: dict[str, str] = {}  # subnet -> node
        self.vteps: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        prefix = keys.network(net.id)
        for key, kv in state.items():
            if not key.startswith(prefix):
                continue
            parsed = keys.parse_network_key(key)
            data = _parse(kv)
            if parsed is None or not isinstance(data, dict):
                continue
            _, part, name = parsed
            if part == "subnets":
                self.claims[name.replace("-", "/")] = str(data.get("node", ""))
            elif part == "vteps":
                self.vteps[name] = data
            elif part == "endpoints":
                self.endpoints[name] = data


def _nodes_up(state: dict[str, etcd.KV]) -> dict[str, dict[str, Any]]:
    out = {}
    for key, kv in state.items():
        parsed = keys.parse_node_key(key)
        data = _parse(kv)
        if parsed and parsed[1] == "status" and isinstance(data, dict):
            out[parsed[0]] = data
    return out


class Overlays:
    """`await Overlays(member, ctx).run()` for the agent's life in a cluster."""

    def __init__(self, member: membership.Membership, ctx: context.Context, *,
                 check_every: float = CHECK_EVERY,
                 wake: asyncio.Queue[Any] | None = None) -> None:
        """`wake`: a queue of the agent's events (a step done, a container started or gone):
        each one brings the next pass forward, so an endpoint is announced at once."""
        self.member, self.ctx, self.check_every, self.wake = member, ctx, check_every, wake
        self.client, self.node = member.client, member.id
        self.state: dict[str, etcd.KV] = {}
        self.listed = False
        self.dirty = asyncio.Event()
        self.lease_keys: dict[str, str] = {}  # what lives under the node lease: VTEPs, endpoints
        self._written: dict[str, tuple[str, int]] = {}  # key -> (value, lease) put
        self._ensured: dict[str, tuple[local_overlay.Local, float]] = {}
        self._members: tuple[tuple[str, ...], float] = ((), 0.0)
        self._underlay: tuple[str, int] | None = None
        self._waiting: set[str] = set()  # removed networks that containers here still use
        self._said_no_underlay = False
        member.extra.append(lambda: list(self.lease_keys.items()))

    async def run(self) -> None:
        networks.OVERLAY = self  # a stack's `driver: overlay` networks come through here
        try:
            await asyncio.gather(self._watch(), self._converge(), self._woken())
        finally:
            networks.OVERLAY = None

    async def _woken(self) -> None:
        if self.wake is None:
            return
        while True:
            await self.wake.get()
            self.dirty.set()

    # -- a stack's own overlay networks (controllers.networks calls these)
    async def declare(self, name: str, subnet: str | None, attachable: bool) -> None:
        """The cluster network `name`, made unless it exists, once this host serves it."""
        try:
            if not any(n.name == name for n in _networks(self.state).values()):
                try:
                    await create_network(self.client, name, subnet=subnet,
                                         attachable=attachable)
                except OverlayError as error:
                    if "already exists" not in str(error):
                        raise
            self.dirty.set()
            deadline = time.monotonic() + 15
            while name not in await asyncio.to_thread(local_overlay.local_names, self.ctx):
                if time.monotonic() > deadline:
                    raise OverlayError(f"network {name}: this host does not serve it yet "
                                       "(see the agent's log)")
                await asyncio.sleep(0.1)
        except (OverlayError, etcd.EtcdError) as error:
            raise networks.NetworkControllerError(f"overlay network {name}: {error}") from None

    async def withdraw(self, name: str) -> None:
        """The cluster network `name` removed, unless containers of another host still use
        it after a while (then it stays, as docker's swarm keeps a network with tasks on it):
        a stack's down reaches every host, and their containers leave at their own pace."""
        deadline = time.monotonic() + 15
        while True:
            self.dirty.set()  # this host's endpoints of it go at the next pass
            try:
                await remove_network(self.client, name)
                return
            except OverlayError as error:
                if "not found" in str(error):
                    return
                if time.monotonic() > deadline:
                    log.info("overlay.kept", network=name, reason=str(error))
                    return
            except etcd.EtcdError as error:
                raise networks.NetworkControllerError(
                    f"overlay network {name}: {error}") from None
            await asyncio.sleep(0.5)

    # -- the copy of the store
    async def _watch(self) -> None:
        pause = 0.5
        while True:
            try:
                revision, kvs = await self.client.range(keys.PREFIX)
                self.state = {kv.key: kv for kv in kvs}
                self.listed = True
                self.dirty.set()
                log.info("overlay.listed", revision=revision, keys=len(kvs))
                pause = 0.5
                async for event in self.client.watch(keys.PREFIX, start_revision=revision + 1):
                    if event.type == "put":
                        self.state[event.kv.key] = event.kv
                    else:
                        self.state.pop(event.kv.key, None)
                    self.dirty.set()
            except etcd.Compacted as error:
                log.warning("overlay.relist", reason=str(error))
            except etcd.EtcdError as error:
                # The copy stays: routes and names as last known until etcd answers again.
                log.warning("overlay.watch_failed", error=str(error))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def _converge(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # a quiet second: check the kernel anyway
                await asyncio.wait_for(self.dirty.wait(), self.check_every)
            self.dirty.clear()
            if not self.listed:
                continue
            try:
                await self.apply()
            except etcd.EtcdError as error:
                log.warning("overlay.store_unavailable", error=str(error))
            except Exception as error:  # one bad pass must not end the agent's overlays
                log.error("overlay.apply_failed", exc_info=error,
                          error=f"{type(error).__name__}: {error}")

    # -- one pass
    async def apply(self) -> None:
        state = dict(self.state)
        nets = _networks(state)
        nodes = _nodes_up(state)
        if self._underlay is None:
            try:
                self._underlay = await asyncio.to_thread(
                    local_overlay.underlay, self.ctx, self.member.config.address)
            except local_overlay.OverlayControllerError as error:
                # No overlay can be served without it: said once, looked for every pass.
                if not self._said_no_underlay:
                    log.warning("overlay.no_underlay", error=str(error))
                    self._said_no_underlay = True
                return
        await self._sync_members(nodes)
        wanted_keys: dict[str, str] = {}
        served: dict[str, Network] = {}
        for net in nets.values():
            view = _View(state, net)
            subnet = await self._subnet(net, view)
            if subnet is None:
                continue
            local = self._local(net, subnet, view)
            await self._ensure(local)
            served[net.name] = net
            wanted_keys[keys.vtep(net.id, self.node)] = json.dumps({
                "node": self.node, "subnet": subnet, "underlay_ip": local.underlay_ip,
                "vtep_mac": vxlan.vtep_mac(self.node, net.vni), "mtu": self._underlay[1]})
            peers = [vxlan.Peer(node, str(v["subnet"]), str(v["underlay_ip"]), str(v["vtep_mac"]))
                     for node, v in view.vteps.items()
                     if node != self.node and {"subnet", "underlay_ip", "vtep_mac"} <= set(v)]
            await asyncio.to_thread(local_overlay.sync_peers, self.ctx, local, peers)
        endpoints = await asyncio.to_thread(local_overlay.endpoints, self.ctx, set(served))
        for ep in endpoints:
            net = served[ep.network]
            names = sorted({ep.container, ep.hostname} - {""})
            wanted_keys[keys.endpoint(net.id, f"{self.node}.{ep.container}")] = json.dumps({
                "ip": ep.ip, "node": self.node, "names": names, "service": ep.service,
                "aliases": list(ep.aliases), "ready": True})
        self.lease_keys = wanted_keys
        await self._publish()
        self._feed_dns(state, served)
        await self._forget(nets)

    def _local(self, net: Network, subnet: str, view: _View) -> local_overlay.Local:
        assert self._underlay is not None
        mtus = [self._underlay[1]] + [int(v["mtu"]) for v in view.vteps.values()
                                      if isinstance(v.get("mtu"), int)]
        return local_overlay.Local(
            id=net.id, name=net.name, vni=net.vni, cidr=net.cidr, node=self.node, subnet=subnet,
            underlay_ip=self.member.config.address, underlay_dev=self._underlay[0],
            mtu=vxlan.mtu_for(mtus), attachable=net.attachable)

    async def _subnet(self, net: Network, view: _View) -> str | None:
        """This host's subnet of `net`: the one it claimed before (kept across restarts and
        outages), else the first free one, claimed by create-if-absent."""
        mine = sorted(c for c, node in view.claims.items() if node == self.node)
        if mine:
            return mine[0]
        cidr = ipaddress.IPv4Network(net.cidr)
        for candidate in cidr.subnets(new_prefix=net.host_prefix):
            if str(candidate) in view.claims:
                continue
            key = keys.subnet(net.id, str(candidate))
            if await self.client.create(key, json.dumps({"node": self.node})):
                log.info("overlay.subnet_claimed", network=net.name, subnet=str(candidate))
                return str(candidate)
            return None  # another host took it meanwhile: the watch brings its claim
        log.error("overlay.no_subnet_left", network=net.name, cidr=net.cidr)
        return None

    async def _ensure(self, local: local_overlay.Local) -> None:
        before = self._ensured.get(local.name)
        now = time.monotonic()
        if before is not None and before[0] == local and now - before[1] < ENSURE_EVERY:
            return
        await asyncio.to_thread(local_overlay.ensure, self.ctx, local)
        self._ensured[local.name] = (local, now)

    async def _sync_members(self, nodes: dict[str, dict[str, Any]]) -> None:
        addresses = tuple(sorted({str(s["address"]) for s in nodes.values() if s.get("address")}
                                 | {self.member.config.address}))
        now = time.monotonic()
        if addresses == self._members[0] and now - self._members[1] < ENSURE_EVERY:
            return
        await asyncio.to_thread(local_overlay.sync_members, self.ctx, vxlan.DEFAULT_PORT,
                                list(addresses))
        self._members = (addresses, now)

    async def _publish(self) -> None:
        """The lease keys as wanted: puts under the current lease, deletes of what went."""
        if not self.member.registered.is_set():
            return  # the membership registers them with its next lease
        lease = self.member.lease_id
        for key, value in self.lease_keys.items():
            stored = self.state.get(key)
            if self._written.get(key) == (value, lease) and stored is not None:
                continue
            if stored is not None and stored.value == value.encode() and stored.lease == lease:
                self._written[key] = (value, lease)
                continue
            await self.client.put(key, value, lease=lease)
            self._written[key] = (value, lease)
        for key in [k for k in self._written if k not in self.lease_keys]:
            await self.client.delete(key)
            del self._written[key]
        # Endpoints of this node that an agent before a restart left, and no container has now.
        for key in [k for k in self.state if "/endpoints/" in k and k not in self.lease_keys
                    and k.rsplit("/", 1)[1].startswith(self.node + ".")]:
            await self.client.delete(key)

    def _feed_dns(self, state: dict[str, etcd.KV], served: dict[str, Network]) -> None:
        """The other hosts' ready endpoints, by network and name, for the embedded DNS; this
        host's own come from its runtime."""
        index: dict[str, dict[str, list[str]]] = {}
        for net in served.values():
            names: dict[str, list[str]] = {}
            for ep in _View(state, net).endpoints.values():
                if ep.get("node") == self.node or not ep.get("ready") or not ep.get("ip"):
                    continue
                for name in {*ep.get("names", []), ep.get("service", ""), *ep.get("aliases", [])}:
                    if name:
                        names.setdefault(str(name).lower(), []).append(str(ep["ip"]))
            index[net.name] = names
        dns.REMOTE.replace({net: {name: tuple(ips) for name, ips in names.items()}
                            for net, names in index.items()})

    async def _forget(self, nets: dict[str, Network]) -> None:
        """Overlays of networks the cluster removed (while this agent ran or not) leave this
        host once no container uses them here."""
        known = {n.name for n in nets.values()}
        served = await asyncio.to_thread(local_overlay.served, self.ctx, self.node,
                                         self.member.config.address)
        for local in served:
            if local.name in known:
                continue
            try:
                await asyncio.to_thread(local_overlay.remove, self.ctx, local)
            except local_overlay.OverlayControllerError as error:
                if local.name not in self._waiting:  # said once, tried every pass
                    log.info("overlay.removal_waits", network=local.name, reason=str(error))
                    self._waiting.add(local.name)
                continue
            self._waiting.discard(local.name)
            self._ensured.pop(local.name, None)
            log.info("overlay.left", network=local.name)
