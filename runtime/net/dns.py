"""The embedded DNS server (asyncio, UDP and TCP): one listener per network on its gateway
address, answering that network's names in rotating order and forwarding the rest upstream.

Listening on each bridge's gateway in the host namespace, rather than on 127.0.0.11 inside every
container namespace, keeps one socket per network instead of one per container, and the socket a
query arrives on tells which network's view answers it."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ipaddress
import itertools
import random
import socket
import struct
from pathlib import Path

import structlog
from dnslib import PTR, QTYPE, RCODE, RR, A, DNSRecord

from runtime.net import model, netns

log = structlog.get_logger(__name__)

TTL = 0  # containers come and go: let no client keep an answer
UPSTREAM_TIMEOUT = 2.0
UDP_SIZE = 512
TCP_IDLE = 30.0


@dataclasses.dataclass(frozen=True)
class Client:
    """What one container sees beyond its network's names: its links and its own upstreams."""

    links: tuple[tuple[str, tuple[str, ...]], ...] = ()
    upstreams: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class View:
    """The names one network answers, and where its listener is."""

    network: str
    gateway: str
    subnet: str
    records: tuple[tuple[str, tuple[str, ...]], ...] = ()
    clients: tuple[tuple[str, Client], ...] = ()
    reverse: tuple[tuple[str, str], ...] = ()
    internal: bool = False  # no egress, so nothing is forwarded for it either

    # lookups by key, built once per view (a view answers many queries)
    @functools.cached_property
    def by_name(self) -> dict[str, tuple[str, ...]]:
        return dict(self.records)

    @functools.cached_property
    def by_client(self) -> dict[str, Client]:
        return dict(self.clients)

    @functools.cached_property
    def by_address(self) -> dict[str, str]:
        return dict(self.reverse)


def _norm(name: str) -> str:
    return name.rstrip(".").lower()


def views(networks: list[model.Network], attachments: list[model.Attachment]) -> dict[str, View]:
    """Per network: service names (every replica), container names, aliases and hostnames."""
    out = {}
    for net in networks:
        records: dict[str, list[str]] = {}
        addr_of: dict[str, list[str]] = {}
        mine = [(a, e) for a in attachments for e in a.endpoints if e.network == net.name]
        for att, ep in mine:
            c = att.container
            for name in {n for n in (c.container, c.service, c.hostname, *ep.aliases) if n}:
                records.setdefault(_norm(name), []).append(ep.ipv4)
            if c.service:
                addr_of.setdefault(_norm(c.service), []).append(ep.ipv4)
            addr_of.setdefault(_norm(c.container), []).append(ep.ipv4)
        clients = []
        reverse = tuple(sorted((ep.ipv4, att.container.container) for att, ep in mine))
        for att, ep in mine:
            c = att.container
            links = tuple(
                (_norm(alias), tuple(addr_of.get(_norm(target), ())))
                for target, alias in c.links
                if addr_of.get(_norm(target))
            )
            if links or c.dns:
                clients.append((ep.ipv4, Client(links, tuple(c.dns))))
        out[net.name] = View(
            network=net.name,
            gateway=net.gateway,
            subnet=net.subnet,
            records=tuple(sorted((k, tuple(sorted(set(v), key=ipaddress.ip_address)))
                                 for k, v in records.items())),
            clients=tuple(sorted(clients)),
            reverse=reverse,
            internal=net.internal,
        )
    return out


class Remote:
    """Names of endpoints on other hosts of a cluster, per network name: replaced whole by the
    cluster's watcher, read by every query. Kept as last set while the cluster store is away."""

    def __init__(self) -> None:
        self._records: dict[str, dict[str, tuple[str, ...]]] = {}

    def replace(self, records: dict[str, dict[str, tuple[str, ...]]]) -> None:
        self._records = records

    def lookup(self, network: str, name: str) -> tuple[str, ...]:
        """The addresses of `name` on other hosts, shuffled (replicas share the load)."""
        found = list(self._records.get(network, {}).get(_norm(name), ()))
        random.shuffle(found)
        return tuple(found)


REMOTE = Remote()  # one agent per process: its cluster watcher feeds this


class Resolver:
    """Answers from the views; pure apart from the rotation counters."""

    def __init__(self) -> None:
        self._turn: dict[tuple[str, str], itertools.count] = {}

    def lookup(self, view: View, client_ip: str, name: str) -> tuple[str, ...] | None:
        """Addresses for `name` as seen by `client_ip`, rotated per query; None if not ours."""
        name = _norm(name)
        client = view.by_client.get(client_ip)
        found = dict(client.links).get(name) if client else None
        if found is None:
            found = view.by_name.get(name)
        if not found:
            return None
        turn = next(self._turn.setdefault((view.network, name), itertools.count()))
        k = turn % len(found)
        return found[k:] + found[:k]

    def reverse(self, view: View, name: str) -> str | None:
        """The container name for an `in-addr.arpa` name, if the address is in the view."""
        labels = _norm(name).split(".")
        if labels[-2:] != ["in-addr", "arpa"] or len(labels) != 6:
            return None
        return view.by_address.get(".".join(reversed(labels[:4])))


class Server:
    """The listeners of one agent: `update()` opens and closes them to match the views."""

    def __init__(self, host_ns: Path | None, upstreams: tuple[str, ...] = (), port: int = 53):
        self.host_ns = host_ns
        self.upstreams = upstreams
        self.port = port
        self.resolver = Resolver()
        self.views: dict[str, View] = {}
        self._listeners: dict[str, tuple[str, asyncio.DatagramTransport, asyncio.Server]] = {}

    @classmethod
    def for_host(cls, host: model.Host, port: int = 53) -> Server:
        """The server of one agent: listeners in its host namespace, its configured upstreams
        (none by default: the agent passes `resolvconf.host_resolvers()` when it should forward)."""
        return cls(host.netns, host.upstreams, port)

    async def update(self, views: dict[str, View]) -> None:
        """Serve exactly these views; a listener moves if its gateway changed."""
        self.views = dict(views)
        for name in list(self._listeners):
            if name not in views or self._listeners[name][0] != views[name].gateway:
                await self._stop(name)
        for name, view in views.items():
            if name not in self._listeners:
                self._listeners[name] = (view.gateway, *await self._listen(name, view.gateway))
                log.info("dns.listener_opened", network=name, address=f"{view.gateway}:{self.port}")

    async def close(self) -> None:
        for name in list(self._listeners):
            await self._stop(name)

    def dead(self) -> list[str]:
        """Networks whose listener lost a socket: closed, its UDP socket aborted (`ss -K`),
        or its TCP socket no longer listening. Checked, not probed: nothing is sent."""
        out = []
        for name, (_, udp, tcp) in self._listeners.items():
            protocol = udp.get_protocol()
            lost = udp.is_closing() or not tcp.is_serving() or \
                (isinstance(protocol, _Udp) and protocol.aborted)
            if not lost:
                lost = not all(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
                               for s in tcp.sockets)
            if lost:
                out.append(name)
        return out

    async def restart(self, names: list[str]) -> None:
        """Close the listeners of `names` and open them again on fresh sockets."""
        for name in names:
            if name in self._listeners:
                # A socket the kernel destroyed is closed, not shut down: nothing waits on it.
                _, udp, tcp = self._listeners.pop(name)
                udp.close()
                tcp.close()
                log.warning("dns.listener_lost", network=name)
        await self.update(self.views)

    async def _stop(self, name: str) -> None:
        _, udp, tcp = self._listeners.pop(name)
        udp.close()
        tcp.close()
        await tcp.wait_closed()
        log.info("dns.listener_closed", network=name)

    def _bound(self, kind: int, address: str) -> socket.socket:
        sock = netns.socket(self.host_ns, socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, self.port))
        sock.setblocking(False)
        return sock

    async def _listen(self, network: str, address: str):
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self, network), sock=self._bound(socket.SOCK_DGRAM, address)
        )
        tcp = await asyncio.start_server(
            lambda r, w: self._tcp(network, r, w), sock=self._bound(socket.SOCK_STREAM, address)
        )
        return udp, tcp

    async def _tcp(self, network: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:
                # an idle client must not hold a connection for ever
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                size = struct.unpack("!H", head)[0]
                query = await reader.readexactly(size)
                reply = await self.answer(network, writer.get_extra_info("peername")[0], query)
                if reply:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def answer(self, network: str, client_ip: str, data: bytes,
                     limit: int | None = None) -> bytes | None:
        """The reply to one query packet from `client_ip` on `network` (None: drop it). Over UDP
        (`limit` set) an answer too large for the client is sent truncated, so it asks over TCP."""
        try:
            query = DNSRecord.parse(data)
        except Exception:  # a malformed packet gets no answer, as from any resolver
            return None
        view = self.views.get(network)
        if view is None or ipaddress.ip_address(client_ip) not in ipaddress.ip_network(view.subnet):
            reply = query.reply()
            reply.header.rcode = RCODE.REFUSED
            return reply.pack()
        reply = self.local(view, client_ip, query)
        if reply is not None:
            packet = reply.pack()
            if limit is not None and len(packet) > max(limit, _edns_size(query)):
                reply = query.reply()
                reply.header.tc = 1
                packet = reply.pack()
            return packet
        client = view.by_client.get(client_ip)
        upstreams = (client.upstreams if client and client.upstreams else ()) or self.upstreams
        if view.internal:
            upstreams = ()
        forwarded = await forward(data, upstreams)
        if forwarded is not None:
            return forwarded
        reply = query.reply()
        reply.header.rcode = RCODE.NXDOMAIN if not upstreams else RCODE.SERVFAIL
        return reply.pack()

    def local(self, view: View, client_ip: str, query: DNSRecord) -> DNSRecord | None:
        """The answer from the view, or None when the name is not ours."""
        q = query.q
        reply = query.reply()
        if q.qtype == QTYPE.PTR:
            target = self.resolver.reverse(view, str(q.qname))
            if target is None:
                return None
            reply.add_answer(RR(q.qname, QTYPE.PTR, rdata=PTR(target + "."), ttl=TTL))
            return reply
        found = self.resolver.lookup(view, client_ip, str(q.qname))
        far = REMOTE.lookup(view.network, str(q.qname))
        if far:  # local replicas from the runtime, the other hosts' from the cluster
            found = tuple(found or ()) + tuple(ip for ip in far if ip not in (found or ()))
        if found is None:
            return None
        if q.qtype in (QTYPE.A, QTYPE.ANY):
            for ip in found:
                reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(ip), ttl=TTL))
        return reply  # ours, but no record of that type: NOERROR, empty


def _edns_size(query: DNSRecord) -> int:
    """The UDP payload size the client announced (EDNS), else the classic 512 bytes."""
    return max([rr.rclass for rr in query.ar if rr.rtype == QTYPE.OPT] or [UDP_SIZE])


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: Server, network: str):
        self.server = server
        self.network = network
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: set[asyncio.Task] = set()
        self.aborted = False  # the kernel destroyed the socket (`ss -K`): it is opened anew

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data: bytes, addr):
        task = asyncio.get_running_loop().create_task(self._reply(data, addr))
        self.pending.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self.pending.discard)

    def error_received(self, exc):
        if isinstance(exc, ConnectionAbortedError):
            self.aborted = True

    async def _reply(self, data: bytes, addr) -> None:
        reply = await self.server.answer(self.network, addr[0], data, limit=UDP_SIZE)
        if reply and self.transport and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


class _Once(asyncio.DatagramProtocol):
    """Hands the first datagram that arrives to a future."""

    def __init__(self, done: asyncio.Future):
        self.done = done

    def datagram_received(self, data, addr):
        if not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc):
        if not self.done.done():
            self.done.set_exception(exc)


async def forward(query: bytes, upstreams: tuple[str, ...]) -> bytes | None:
    """Ask each upstream (`ip` or `ip:port`) in turn over UDP from the agent's own namespace."""
    loop = asyncio.get_running_loop()
    for upstream in upstreams:
        host, _, port = upstream.partition(":")
        done: asyncio.Future = loop.create_future()
        transport = None
        try:
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(_Once, done), remote_addr=(host, int(port or 53)))
            transport.sendto(query)
            return await asyncio.wait_for(done, UPSTREAM_TIMEOUT)
        except (TimeoutError, OSError, ValueError) as exc:
            log.warning("dns.upstream_failed", upstream=upstream, error=repr(exc))
        finally:
            if transport is not None:
                transport.close()
    return None
