"""Single-host bridge networks: ensure and remove networks, attach and detach containers, and
keep the agent's nft table and DNS views in step with the records on disk."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import structlog

from runtime.net import (
    dns,
    flight,
    ipam,
    links,
    model,
    names,
    netns,
    nft,
    ports,
    records,
    resolvconf,
    underlay,
)

log = structlog.get_logger(__name__)

MODES = ("bridge", "none", "host", "netns", "service:<name>", "container:<name>")
OWN_NETNS = ("bridge", "none")


class NetworkError(ValueError):
    """A request that cannot be met as asked; it says where and what, and nothing was changed."""


@dataclasses.dataclass(frozen=True)
class Observed:
    """What exists for one agent, read from its records, IPAM, netlink and nft."""

    networks: dict[str, model.Network]
    attachments: dict[str, model.Attachment]
    pools: dict[str, ipam.Pool]
    links: dict[str, links.Link]
    table: str | None


def label(host: model.Host, *what: str) -> str:
    """The alias put on links this agent makes: `pcompose <agent> <what...>`."""
    return " ".join(("pcompose", host.agent, *what))


NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$")


def _check_name(where: str, name: str) -> None:
    # names become file names under the state and run dirs: nothing that could leave them
    if not NAME.match(name):
        raise NetworkError(f"{where}: {name!r} is not a valid name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")


def ensure_network(host: model.Host, spec: model.NetworkSpec) -> model.Network:
    """The bridge, subnet and gateway of `spec`; an external network must already exist."""
    _check_name("networks", spec.name)
    if not 68 <= spec.mtu <= 65535:
        raise NetworkError(f"networks.{spec.name}.driver_opts.mtu: {spec.mtu} is not in 68-65535")
    known = records.networks(host.state_root)
    if spec.external:
        if spec.name not in known:
            raise NetworkError(f"network {spec.name} declared as external, but could not be found")
        return known[spec.name]
    bridge = "" if spec.driver in underlay.DRIVERS else spec.bridge or names.bridge(host.agent, spec.name)
    if spec.driver in underlay.DRIVERS:
        try:  # nothing to make on the host: its parent link must be there
            underlay.check(underlay.Underlay(spec.driver, spec.parent, spec.mode), f"networks.{spec.name}")
            underlay.parent_mtu(host.netns, spec.parent)
        except underlay.UnderlayError as exc:
            raise NetworkError(str(exc)) from None
    if len(bridge.encode()) > names.IFNAMSIZ:
        raise NetworkError(f"networks.{spec.name}: bridge name {bridge!r} is longer than 15 bytes")
    try:
        pool = ipam.reserve_network(
            host.state_root, spec.name, spec.subnet, spec.gateway, spec.ip_range,
            host.pools, links.routes(host.netns), spec.aux_addresses,
        )
    except ipam.IpamError as exc:
        raise NetworkError(str(exc)) from None
    net = model.Network(spec.name, bridge, pool.subnet, pool.gateway, spec.internal, False, spec.mtu,
                        spec.driver, spec.parent, spec.mode)
    if bridge:
        prior = known.get(spec.name)
        mac = links.ensure_bridge(host.netns, bridge, net.gateway, net.prefixlen, net.mtu,
                                  label=label(host, "network", net.name),
                                  mac=prior.mac if prior and prior.bridge == bridge else "")
        net = dataclasses.replace(net, mac=mac)
    if known.get(spec.name) != net:
        records.save_network(host.state_root, net)
        log.info("network.created", network=net.name, bridge=bridge, subnet=net.subnet)
    sync_rules(host)
    return net


def remove_network(host: model.Host, name: str, external: bool = False) -> None:
    """Remove the bridge, its addresses and its rules; external or missing networks are left be."""
    if external:
        return
    users = sorted(
        a.container.container
        for a in records.attachments(host.state_root).values()
        if any(e.network == name for e in a.endpoints)
    )
    if users:
        raise NetworkError(f"network {name}: still used by {', '.join(users)}")
    net = records.networks(host.state_root).get(name)
    bridge = net.bridge if net else names.bridge(host.agent, name)
    # Ends whose namespace was removed a moment ago may still wait for the kernel to take them.
    # An underlay network has no bridge: its children went with their containers' namespaces.
    for link in links.observe(host.netns).values() if bridge else ():
        if link.master == bridge:
            links.remove_link(host.netns, link.ifname)
    if bridge:
        links.remove_link(host.netns, bridge)
    ipam.release_network(host.state_root, name)
    records.drop_network(host.state_root, name)
    sync_rules(host)
    log.info("network.removed", network=name)


def remove_unused(host: model.Host, keep: tuple[str, ...] = ()) -> list[str]:
    """Remove every network no container uses any more (but those in `keep`); returns their names."""
    used = {e.network for a in records.attachments(host.state_root).values() for e in a.endpoints}
    gone = sorted(set(records.networks(host.state_root)) - used - set(keep))
    for name in gone:
        remove_network(host, name)
    return gone


def _shares(mode: str) -> bool:
    return mode == "netns" or mode.startswith(("service:", "container:"))


def shared_netns(host: model.Host, mode: str) -> Path:
    """The namespace `service:x` or `container:x` joins: that of x (its first replica for a service)."""
    kind, _, name = mode.partition(":")
    found = sorted(
        (a.container.container, a.container.netns)
        for a in records.attachments(host.state_root).values()
        if a.container.mode in OWN_NETNS and a.container.netns is not None
        and name == (a.container.service if kind == "service" else a.container.container)
    )
    if not found:
        raise NetworkError(f"network_mode {mode}: no attached {kind} {name!r} to share a namespace with")
    return found[0][1]


def _check(host: model.Host, c: model.ContainerNet, nets: dict[str, model.Network]) -> None:
    where = f"services.{c.service or c.container}"
    _check_name(f"{where}.container_name", c.container)
    if c.mode not in ("bridge", "none", "host") and not _shares(c.mode):
        raise NetworkError(f"{where}.network_mode: {c.mode!r} is not one of {', '.join(MODES)}")
    if c.netns is None and (c.mode in OWN_NETNS or c.mode == "netns"):
        raise NetworkError(f"{where}: network_mode {c.mode} needs a namespace path")
    if c.mode != "bridge" and c.endpoints:
        raise NetworkError(f"{where}: network_mode {c.mode} cannot be combined with networks")
    for ep in c.endpoints:
        if ep.network not in nets:
            raise NetworkError(f"{where}.networks.{ep.network}: no such network")
    if c.ports and c.mode not in ("bridge", "host"):
        raise NetworkError(f"{where}.ports: cannot publish ports with network_mode {c.mode}")


def _with_host_ports(c: model.ContainerNet, previous, atts) -> model.ContainerNet:
    """Ports published without a host port get one (kept across attaches)."""
    if all(p.published != ports.ANY for p in c.ports):
        return c
    taken = {(p.protocol, p.published) for a in atts.values() if a.container.container != c.container
             for p in a.container.ports}
    before = previous.container.ports if previous else ()
    return dataclasses.replace(c, ports=ports.choose(c.ports, before, taken))


def _check_ports(c: model.ContainerNet, atts: dict[str, model.Attachment]) -> None:
    """Refuse a host port another container already publishes (docker: "port is already allocated")."""
    others = [
        nft.Published("", "", p)
        for a in atts.values()
        if a.container.container != c.container
        for p in a.container.ports
    ]
    mine = [nft.Published("", "", p) for p in c.ports]
    taken = set(nft.clashes(tuple(others + mine))) - set(nft.clashes(tuple(others)))
    if taken:
        raise NetworkError(
            f"services.{c.service or c.container}.ports: host port {', '.join(sorted(taken))} "
            "is already allocated")


def attach(host: model.Host, c: model.ContainerNet, sync: bool = True) -> model.Attachment:
    """Give the container its namespace, a veth into each network (eth0, eth1, ... by priority,
    then declaration), addresses, a default route, its resolv.conf and hosts; idempotent.
    `sync=False` leaves the nft table for one `sync_rules` after a batch."""
    nets = records.networks(host.state_root)
    _check(host, c, nets)
    if c.mode == "host":
        c = dataclasses.replace(c, netns=host.netns)  # the agent's host namespace, maybe simulated
    elif _shares(c.mode) and c.netns is None:
        c = dataclasses.replace(c, netns=shared_netns(host, c.mode))
    atts = records.attachments(host.state_root)
    previous = atts.get(c.container)
    c = _with_host_ports(c, previous, atts)
    _check_ports(c, atts)
    fresh = c.mode in OWN_NETNS and not netns.exists(_own_netns(c))
    if c.mode in OWN_NETNS:
        netns.ensure(_own_netns(c))
    ordered = [ep for _, ep in sorted(enumerate(c.endpoints), key=lambda ie: (-ie[1].priority, ie[0]))]
    made: list[model.Endpoint] = []
    try:
        for index, spec in enumerate(ordered):
            made.append(_join(host, c, nets[spec.network], spec, index))
    except (ipam.IpamError, underlay.UnderlayError, OSError) as exc:
        if previous is None:
            _undo(host, c, made)
        if isinstance(exc, (ipam.IpamError, underlay.UnderlayError)):
            raise NetworkError(str(exc)) from None
        raise
    wanted = {ep.network for ep in ordered}
    for old in previous.endpoints if previous else ():
        if old.network not in wanted:
            links.remove_link(host.netns, old.host_ifname)
            ipam.release(host.state_root, old.network, c.container)
    if c.mode == "bridge":
        outward = [nets[ep.network] for ep in ordered if not nets[ep.network].internal]
        gateway = outward[0].gateway if outward else None
        if gateway or not fresh:  # a namespace made just now has no default route to remove
            links.ensure_default_route(c.netns, gateway)
    att = model.Attachment(c, tuple(made))
    records.save_attachment(host.state_root, att)
    write_files(host, att)
    # The table holds networks and published ports only: a container without ports (before
    # and now) changes nothing in it, and its network's rules were in place before it came.
    if sync and (c.ports or (previous and previous.container.ports)):
        sync_rules(host)
    log.info("container.attached", container=c.container, mode=c.mode,
             addresses=[f"{e.network}={e.ipv4}" for e in made])
    return att


def _join(host: model.Host, c: model.ContainerNet, net: model.Network, spec: model.EndpointSpec, index: int):
    lease = ipam.allocate(host.state_root, net.name, c.container, spec.ipv4, spec.mac)
    host_if = names.host_veth(host.agent, c.container, net.name)
    ifname = names.container_ifname(index)
    if net.driver in underlay.DRIVERS:  # a child of the host link instead of a veth
        underlay.ensure_endpoint(host.netns, underlay.Underlay(net.driver, net.parent, net.mode),
                                 c.netns, ifname, lease.ipv4, net.prefixlen, lease.mac, net.mtu)
    else:
        links.ensure_veth(host.netns, host_if, net.bridge, c.netns, ifname, lease.ipv4,
                          net.prefixlen, lease.mac, net.mtu, label=label(host, c.container, net.name))
    return model.Endpoint(c.container, net.name, ifname, host_if, lease.ipv4, lease.mac, spec.aliases)


def _own_netns(c: model.ContainerNet) -> Path:
    """The namespace of a `bridge` or `none` container, which its caller names."""
    if c.netns is None:
        raise NetworkError(f"container {c.container}: network mode {c.mode} needs a namespace path")
    return c.netns


def _undo(host: model.Host, c: model.ContainerNet, made: list[model.Endpoint]) -> None:
    for ep in made:
        links.remove_link(host.netns, ep.host_ifname)
    for spec in c.endpoints:
        ipam.release(host.state_root, spec.network, c.container)
    if c.mode in OWN_NETNS:
        netns.remove(_own_netns(c))


def detach(host: model.Host, container: str, ns: Path | None = None, sync: bool = True) -> None:
    """Remove the container's namespace, veths, addresses, files and published ports; a container
    that was never attached is success. `ns` names the namespace if no record is left; `sync` as
    for `attach`."""
    att = records.attachments(host.state_root).get(container)
    if att and att.container.mode in OWN_NETNS:
        ns = att.container.netns
    own_ns = ns if ns is not None and (att is None or att.container.mode in OWN_NETNS) else None
    if own_ns is not None:
        netns.remove(own_ns)
    if att is None:  # no record: the ends it may have had, by name
        ends = {names.host_veth(host.agent, container, n) for n in records.networks(host.state_root)}
    elif own_ns is not None:
        ends = set()  # each pair goes with the namespace that holds its peer: the kernel's work
    else:
        ends = {ep.host_ifname for ep in att.endpoints}
    for ifname in sorted(ends):
        links.remove_link(host.netns, ifname)
    ipam.release_all(host.state_root, container)
    resolvconf.remove(host.run_dir, container)
    records.drop_attachment(host.state_root, container)
    if sync and (att is None or att.container.ports):  # without ports the table has nothing of it
        sync_rules(host)
    log.info("container.detached", container=container)


def write_files(host: model.Host, att: model.Attachment) -> tuple[Path, Path]:
    """The container's resolv.conf (the embedded DNS of its first network) and hosts files."""
    c = att.container
    # the embedded DNS listens on bridges' gateways only: an underlay's gateway is a router
    gateways = {n.name: n.gateway for n in records.networks(host.state_root).values() if n.bridge}
    if _shares(c.mode):
        owner = [a for a in records.attachments(host.state_root).values()
                 if a.container.netns == c.netns and a.container.mode == "bridge"]
        ends = owner[0].endpoints if owner else ()
    else:
        ends = att.endpoints
    served = [e for e in ends if e.network in gateways]
    servers: tuple[str, ...]
    if served:
        servers = (gateways[served[0].network],)
    elif c.mode == "host" or ends:
        servers = c.dns or resolvconf.host_resolvers()
    else:
        servers = c.dns
    text = resolvconf.render_resolv(servers, c.dns_search, c.dns_opt)
    hosts = resolvconf.render_hosts(c.hostname or c.container, tuple(e.ipv4 for e in ends), c.extra_hosts)
    return resolvconf.write(host.run_dir, c.container, text, hosts)


def desired_rules(host: model.Host) -> nft.Ruleset:
    """The table from the records: every network, and each published port on the container's
    first non-internal network."""
    nets = {k: n for k, n in records.networks(host.state_root).items() if n.bridge}  # no rules for underlays
    published = []
    for att in records.attachments(host.state_root).values():
        outward = [e for e in att.endpoints if e.network in nets and not nets[e.network].internal]
        if outward:
            bridge = nets[outward[0].network].bridge
            published += [nft.Published(outward[0].ipv4, bridge, p) for p in att.container.ports]
    return nft.Ruleset(names.table(host.agent), tuple(nets.values()), tuple(published))


def sync_rules(host: model.Host) -> None:
    """Replace the agent's table from the records at once; no networks left means no table.
    Returns once a replace that read the records after this call has run: concurrent callers
    (attaches of a whole stack) share replaces instead of making one each."""

    def replace() -> None:
        with records.locked(host.state_root, "nft"):
            desired = desired_rules(host)
            if desired.networks:
                nft.apply(host.netns, desired)
                # What drift() compares the kernel's table with from now on.
                records.save_applied_rules(host.state_root, nft.digest(desired),
                                           nft.listed_digest(host.netns, desired.table))
            else:
                nft.remove(host.netns, desired.table)

    flight.run(("nft", str(host.state_root), str(host.netns)), replace)


def dns_views(host: model.Host) -> dict[str, dns.View]:
    """The per-network names the DNS server should answer now."""
    return dns.views([n for n in records.networks(host.state_root).values() if n.bridge],
                     list(records.attachments(host.state_root).values()))


def observe(host: model.Host) -> Observed:
    """What exists now, so a restarted agent finds what it made."""
    return Observed(
        networks=records.networks(host.state_root),
        attachments=records.attachments(host.state_root),
        pools=ipam.observe(host.state_root),
        links=links.observe(host.netns),
        table=nft.observe(host.netns, names.table(host.agent)),
    )


@dataclasses.dataclass(frozen=True)
class Drift:
    """What the kernel holds that differs from what the records say was made, each with a
    reason a user can read; empty when nothing drifted."""

    networks: dict[str, str]  # network name -> what its bridge lost
    containers: dict[str, str]  # container -> what its veths lost
    rules: str = ""  # the nft table: missing or changed


def drift(host: model.Host, running: set[str] | None = None, rules: bool = True) -> Drift:
    """Bridges (address, MTU, up) and the veths of the containers in `running` (None: every
    attached one) read by netlink, and the table by its listing (unless not `rules`),
    against the records: the agent's records say what it meant, the kernel says what is."""
    nets = records.networks(host.state_root)
    found = links.observe(host.netns)
    networks = {name: why for name, net in nets.items()
                if net.bridge and (why := _bridge_drift(net, found))}
    containers = {}
    for name, att in records.attachments(host.state_root).items():
        if (running is not None and name not in running) or att.container.mode != "bridge":
            continue
        why = _veth_drift(att, nets, found)
        if why:
            containers[name] = why
    return Drift(networks, containers, rules_drift(host, nets) if rules else "")


def _bridge_drift(net: model.Network, found: dict[str, links.Link]) -> str:
    link = found.get(net.bridge)
    want = f"{net.gateway}/{net.prefixlen}"
    if link is None or link.kind != "bridge":
        return f"bridge {net.bridge} missing"
    if set(link.addresses) != {want}:
        return f"bridge {net.bridge} has {', '.join(link.addresses) or 'no address'}, not {want}"
    if link.mtu != net.mtu:
        return f"bridge {net.bridge} has MTU {link.mtu}, not {net.mtu}"
    if not link.up:
        return f"bridge {net.bridge} is down"
    return ""


def _veth_drift(att: model.Attachment, nets: dict[str, model.Network],
                found: dict[str, links.Link]) -> str:
    for ep in att.endpoints:
        net = nets.get(ep.network)
        if net is None or not net.bridge:
            continue  # its network is gone (a recreate, not a repair), or has no bridge
        link = found.get(ep.host_ifname)
        if link is None:
            return f"veth {ep.host_ifname} missing"
        if link.master != net.bridge:
            return f"veth {ep.host_ifname} is off bridge {net.bridge}"
        if not link.up:
            return f"veth {ep.host_ifname} is down"
    return ""


def rules_drift(host: model.Host, nets: dict[str, model.Network] | None = None) -> str:
    """"" when the table is what the last apply left, else why not. A table another
    process applied since from newer records is that apply's to record, not drift."""
    nets = records.networks(host.state_root) if nets is None else nets
    if not any(n.bridge for n in nets.values()):  # underlay networks alone have no table
        return ""
    table = names.table(host.agent)
    listed = nft.listed_digest(host.netns, table)
    if listed is None:
        return f"nft table {table} missing"
    rendered, applied = records.applied_rules(host.state_root)
    if rendered is None:
        return f"nft table {table} not checked yet"
    if applied != listed and rendered == nft.digest(desired_rules(host)):
        return f"nft table {table} changed"
    return ""


def reattach(host: model.Host, container: str) -> model.Attachment | None:
    """A running container's veths made again into the namespace it has, with the same
    addresses and MACs (its leases): the container keeps running and sees its link come
    back. None when it has no namespace of its own to put them in."""
    att = records.attachments(host.state_root).get(container)
    if att is None or att.container.mode != "bridge" or att.container.netns is None \
            or not netns.exists(att.container.netns):
        return None
    nets = records.networks(host.state_root)
    found = links.observe(host.netns)
    ends = [(ep, nets[ep.network]) for ep in att.endpoints
            if ep.network in nets and nets[ep.network].bridge]
    if any(ep.host_ifname not in found for ep, _ in ends):
        return attach(host, att.container)  # a pair gone: made again, with its lease
    # Only off their bridge (it was deleted and made again): each goes back on it, which a
    # stack of 50 needs done in a moment, not by attaching each container again.
    for ep, net in ends:
        link = found[ep.host_ifname]
        if link.master != net.bridge or not link.up or link.mtu != net.mtu:
            links.enslave(host.netns, ep.host_ifname, net.bridge, net.mtu)
    return att


def sweep(host: model.Host) -> list[str]:
    """Remove what this agent made but no record accounts for (after a crash between steps):
    labelled links and address leases; returns what went. Bridges without a recorded MAC
    are pinned to theirs first."""
    pin_bridges(host)
    atts = records.attachments(host.state_root)
    nets = records.networks(host.state_root)
    wanted = {n.bridge for n in nets.values()} | {e.host_ifname for a in atts.values() for e in a.endpoints}
    mine = label(host) + " "
    gone = []
    for link in links.observe(host.netns).values():
        if link.label.startswith(mine) and link.ifname not in wanted:
            links.remove_link(host.netns, link.ifname)
            gone.append(f"link {link.ifname}")
    for pool in ipam.observe(host.state_root).values():
        for lease in pool.leases:
            if lease.owner not in atts:
                ipam.release(host.state_root, pool.network, lease.owner)
                gone.append(f"lease {pool.network}/{lease.ipv4}")
    if gone:
        log.info("net.swept", removed=gone)
    return gone


def pin_bridges(host: model.Host) -> list[str]:
    """Bridges made before they had a MAC of their own still follow their lowest port's:
    each is pinned to the MAC it has now (what its containers cached) and that is recorded,
    so that one made again takes it too. Returns the networks pinned."""
    pinned = []
    with records.locked(host.state_root, "networks"):
        found = links.observe(host.netns)
        for net in records.networks(host.state_root).values():
            link = found.get(net.bridge) if net.bridge and not net.mac else None
            if link is None or link.kind != "bridge":
                continue  # made with one, an underlay, or missing: drift repair makes it
            mac = links.pin_mac(host.netns, net.bridge)
            records.save_network(host.state_root, dataclasses.replace(net, mac=mac))
            pinned.append(net.name)
    return pinned


def teardown(host: model.Host) -> None:
    """Remove everything of the agent: containers' network state, networks and its table."""
    for name in list(records.attachments(host.state_root)):
        detach(host, name, sync=False)
    for name in list(records.networks(host.state_root)):
        remove_network(host, name)
    nft.remove(host.netns, names.table(host.agent))
