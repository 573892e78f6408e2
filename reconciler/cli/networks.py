"""`pcompose network ls|create|rm|inspect|prune`: docker's network verbs over this agent's bridges.

They act on the machine in this process, as the image verbs do: a network is a record, an
address reservation and a bridge, and the agent's nft table is rebuilt whole from the records
under a lock by whoever changed them, so a change made here is neither raced nor undone by the
agent's next rebuild. A stack joins a network made here as `external: true`.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time

from reconciler.cli import common, compose_base, listing, nodes

LS_FILTERS = ("driver", "id", "label", "name", "scope", "type", "dangling")
PRUNE_FILTERS = ("label", "label!", "until")
PRUNE_WARNING = "WARNING! This will remove all custom networks not used by at least one container."


def register(verbs: argparse._SubParsersAction) -> None:
    """Add this module's verbs to the parser."""
    network = verbs.add_parser("network", help="Manage networks").add_subparsers(
        dest="network_verb", metavar="COMMAND")

    for name in ("ls", "list"):
        p = network.add_parser(name, help="List networks")
        p.add_argument("-f", "--filter", action="append", default=[], metavar="FILTER",
                       help="Filter output (driver, id, label, name, scope, type, dangling)")
        p.add_argument("--format", default="table", help="table, json or a Go template")
        p.add_argument("--no-trunc", action="store_true", help="Do not truncate the output")
        p.add_argument("-q", "--quiet", action="store_true", help="Only display network IDs")
        p.set_defaults(handler=ls)

    p = network.add_parser("create", help="Create a network")
    p.add_argument("name", metavar="NETWORK")
    p.add_argument("-d", "--driver", default="bridge", help="Driver (bridge only)")
    p.add_argument("--subnet", action="append", default=[], help="Subnet in CIDR format")
    p.add_argument("--gateway", action="append", default=[], help="IPv4 gateway of the subnet")
    p.add_argument("--ip-range", dest="ip_range", action="append", default=[],
                   help="Allocate container addresses from a sub-range")
    p.add_argument("--internal", action="store_true", help="Restrict external access")
    p.add_argument("--attachable", action="store_true", help="Enable manual container attachment")
    p.add_argument("--label", action="append", default=[], help="Set metadata on a network")
    p.add_argument("-o", "--opt", action="append", default=[],
                   help="Driver options (com.docker.network.driver.mtu)")
    p.set_defaults(handler=create)

    for name in ("rm", "remove"):
        p = network.add_parser(name, help="Remove one or more networks")
        p.add_argument("networks", nargs="+", metavar="NETWORK")
        p.add_argument("-f", "--force", action="store_true",
                       help="Do not error if the network does not exist")
        p.set_defaults(handler=rm)

    p = network.add_parser("inspect", help="Display detailed information on one or more networks")
    p.add_argument("networks", nargs="+", metavar="NETWORK")
    p.add_argument("-f", "--format", help="json (default) or a Go template")
    p.set_defaults(handler=inspect)

    p = network.add_parser("prune", help="Remove all unused networks")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], metavar="FILTER",
                   help='Provide filter values (e.g. "until=<timestamp>", "label=<key>=<value>")')
    p.set_defaults(handler=prune)


def _controller():
    from controllers import networks
    return networks


def _views(args: argparse.Namespace):
    ctx = compose_base.context(args)
    return ctx, _controller().list_all(ctx)


# -- ls
def ls(args: argparse.Namespace) -> int:
    filters = listing.parse_filters(args.filter, LS_FILTERS)
    _, views = _views(args)
    views = sorted((v for v in views if _matches(v, filters)),
                   key=lambda v: listing.natural_key(v.name))
    if args.quiet:
        sys.stdout.write("".join(f"{_short(v.id, args.no_trunc)}\n" for v in views))
        return 0
    rows = [_row(v, args.no_trunc) for v in views]
    listing.write_list(args.format, rows, [("ID", "NETWORK ID"), ("Name", "NAME"),
                                           ("Driver", "DRIVER"), ("Scope", "SCOPE")])
    return 0


def _short(nid: str, no_trunc: bool = False) -> str:
    return nid if no_trunc else nid[:12]


def _matches(view, filters: dict[str, list[str]]) -> bool:
    labels = dict(view.labels)
    for key, values in filters.items():
        if key == "label" and not listing.labels_match(labels, values):
            return False
        if key == "name" and not listing.pattern_match(view.name, values):
            return False
        if key == "id" and not any(view.id.startswith(v) for v in values):
            return False
        if key == "driver" and view.driver not in values:
            return False
        if key == "scope" and view.scope not in values:
            return False
        if key == "type":
            bad = [v for v in values if v not in ("custom", "builtin")]
            if bad:
                raise common.UserFacingError(f"invalid filter: 'type'='{bad[0]}'")
            if "custom" not in values:  # no built-in networks here: every one is a user's
                return False
        if key == "dangling" and listing.as_bool(key, values) != (not view.members):
            return False
    return True


def _row(view, no_trunc: bool) -> dict:
    """One line of `network ls --format json`: the keys of docker's network formatter."""
    return {"CreatedAt": listing.go_string(view.created_ns), "Driver": view.driver,
            "ID": _short(view.id, no_trunc), "IPv4": "true", "IPv6": "false",
            "Internal": "true" if view.internal else "false",
            "Labels": listing.labels_text(dict(view.labels)), "Name": view.name,
            "Scope": view.scope}


# -- create
def create(args: argparse.Namespace) -> int:
    if args.driver == "overlay":
        return _create_overlay(args)
    if args.driver != "bridge":
        raise common.UserFacingError(f"network driver {args.driver!r} is not supported "
                                     "(bridge; overlay with an agent in a cluster)")
    for flag, values in (("--subnet", args.subnet), ("--gateway", args.gateway),
                         ("--ip-range", args.ip_range)):
        if len(values) > 1:
            raise common.UserFacingError(f"{flag}: one IPv4 subnet per network is supported")
    if (args.gateway or args.ip_range) and not args.subnet:
        raise common.UserFacingError("--gateway and --ip-range need a --subnet")
    networks = _controller()
    ctx = compose_base.context(args)
    try:
        view = networks.create(
            ctx, args.name, subnet=_one(args.subnet), gateway=_one(args.gateway),
            ip_range=_one(args.ip_range), internal=args.internal, attachable=args.attachable,
            labels=listing.key_values(args.label), options=listing.key_values(args.opt))
    except networks.NetworkControllerError as err:
        raise common.UserFacingError(str(err)) from None
    print(view.id)
    return 0


def _one(values: list[str]) -> str | None:
    return values[0] if values else None


def _agent_call(args: argparse.Namespace, method: str, path: str, body: dict | None = None):
    """A cluster network verb through the local agent, which holds the cluster's client."""
    return nodes.call(args, method, path, body, needs="overlay networks need")


def _create_overlay(args: argparse.Namespace) -> int:
    """A cluster network in etcd; every agent of the cluster makes it on its host, this one
    before the verb returns, so a stack here can join it as `external: true` at once."""
    if args.gateway or args.ip_range or args.internal or args.opt:
        raise common.UserFacingError("overlay networks take --subnet, --attachable and --label "
                                     "(each host gets a part of the subnet)")
    if len(args.subnet) > 1:
        raise common.UserFacingError("--subnet: one IPv4 subnet per network is supported")
    made = _agent_call(args, "POST", "/v1/cluster/networks", {
        "name": args.name, "subnet": _one(args.subnet), "attachable": True,
        "labels": listing.key_values(args.label)})
    ctx = compose_base.context(args)
    deadline = time.monotonic() + 15
    while args.name not in {v.name for v in _controller().list_all(ctx)}:
        if time.monotonic() > deadline:
            raise common.UserFacingError(f"network {args.name} was created in the cluster, but "
                                         "this host's agent has not made it yet: see agent.log")
        time.sleep(0.1)
    print(made["id"])
    return 0


# -- rm
def rm(args: argparse.Namespace) -> int:
    networks = _controller()
    ctx = compose_base.context(args)
    status = 0
    for ref in args.networks:
        try:
            if networks.find(networks.list_all(ctx), ref).driver == "overlay":
                # The cluster's network: every host takes its part away once etcd forgets it.
                gone = _agent_call(args, "DELETE", f"/v1/cluster/networks/{nodes.quoted(ref)}")
                print(gone["name"], flush=True)
                continue
            print(networks.remove_unused(ctx, ref), flush=True)
        except common.UserFacingError as err:
            common.print_error(str(err))
            status = 1
        except networks.NetworkNotFound as err:
            if not args.force:
                common.print_error(str(err))
                status = 1
        except networks.NetworkControllerError as err:
            common.print_error(str(err))
            status = 1
    return status


# -- inspect
def inspect(args: argparse.Namespace) -> int:
    networks = _controller()
    _, views = _views(args)
    found, missing = [], []
    for ref in args.networks:
        try:
            found.append(networks.find(views, ref))
        except networks.NetworkNotFound as err:
            missing.append(str(err))
    shown = [_inspect(v) for v in found]
    if any(v.driver == "overlay" for v in found):
        cluster = {n["name"]: n for n in _agent_call(args, "GET", "/v1/cluster/networks")["networks"]}
        for view, item in zip(found, shown, strict=True):
            net = cluster.get(view.name)
            if view.driver == "overlay" and net is not None:
                item["IPAM"]["Config"] = [{"Subnet": net["cidr"]}]
                item["Subnets"] = net["subnets"]  # node id -> that host's part of the network
    listing.write_inspect(args.format, shown)
    for message in missing:
        common.print_error(message)
    return 1 if missing else 0


def _inspect(view) -> dict:
    """docker's network object, in its key order, for what a pcompose network has."""
    pool = {"Subnet": view.subnet, "Gateway": view.gateway}
    if view.ip_range:
        pool["IPRange"] = view.ip_range
    return {
        "Name": view.name, "Id": view.id, "Created": listing.rfc3339(view.created_ns, nano=True),
        "Scope": view.scope, "Driver": view.driver, "EnableIPv4": True, "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {}, "Config": [pool]},
        "Internal": view.internal, "Attachable": view.attachable, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
        "Containers": {m.container: {
            "Name": m.container,
            "EndpointID": hashlib.sha256(f"{view.id}\0{m.container}".encode()).hexdigest(),
            "MacAddress": m.mac, "IPv4Address": f"{m.ipv4}/{m.prefixlen}", "IPv6Address": ""}
            for m in view.members},
        "Options": dict(view.options), "Labels": dict(view.labels),
    }


# -- prune
def prune(args: argparse.Namespace) -> int:
    filters = listing.parse_filters(args.filter, PRUNE_FILTERS)
    until = listing.until_ns(filters["until"][-1]) if "until" in filters else None
    if not args.force and not listing.confirm(PRUNE_WARNING):
        return 0
    networks = _controller()

    def keep(view) -> bool:
        labels = dict(view.labels)
        return (not listing.labels_match(labels, filters.get("label", []))
                or not listing.labels_exclude(labels, filters.get("label!", []))
                or (until is not None and view.created_ns >= until))

    gone = networks.prune(compose_base.context(args), keep)
    if gone:
        sys.stdout.write("Deleted Networks:\n" + "".join(f"{name}\n" for name in gone) + "\n")
    return 0
