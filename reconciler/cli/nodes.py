"""`pcompose node ls|update|rm`: the cluster's nodes, as docker's node verbs show and edit them,
through the local agent (which holds the cluster's endpoints, TLS files and node id)."""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from pathlib import Path

from reconciler.cli import common, listing


def register(verbs: argparse._SubParsersAction) -> None:
    """Add the `node` verb and its subcommands."""
    node = verbs.add_parser("node", help="Manage the cluster's nodes").add_subparsers(
        dest="node_verb", metavar="COMMAND")

    for name in ("ls", "list"):
        p = node.add_parser(name, help="List the nodes of the cluster")
        p.add_argument("--format", default="table", help="table, json or a Go template")
        p.add_argument("-q", "--quiet", action="store_true", help="Only display node IDs")
        p.set_defaults(handler=ls)

    p = node.add_parser("update", help="Update a node's labels, role or availability")
    p.add_argument("node", metavar="NODE")
    p.add_argument("--label-add", dest="label_add", action="append", default=[],
                   metavar="KEY=VALUE", help="Add or update a node label (repeatable)")
    p.add_argument("--label-rm", dest="label_rm", action="append", default=[], metavar="KEY",
                   help="Remove a node label if it exists (repeatable)")
    p.add_argument("--role", choices=("worker", "manager"), help="Role of the node")
    p.add_argument("--availability", choices=("active", "pause", "drain"),
                   help="Availability of the node")
    p.set_defaults(handler=update)

    for name in ("rm", "remove"):
        p = node.add_parser(name, help="Remove one or more nodes that are down")
        p.add_argument("nodes", nargs="+", metavar="NODE")
        p.set_defaults(handler=rm)


def call(args: argparse.Namespace, method: str, path: str, body: dict | None = None, *,
         needs: str = "start one in the cluster with"):
    """A cluster verb through the local agent, which holds the cluster's endpoints, TLS files
    and node id; `needs` leads the hint of the agent to start when none answers."""
    from reconciler.agent import plainclient, wire

    try:
        with plainclient.PlainClient(Path(args.run_dir), timeout=15.0) as agent:
            return agent.call(method, path, body)
    except wire.AgentUnavailable:
        raise common.UserFacingError(
            f"no agent answers on {args.run_dir}: {needs} `pcompose agent --cluster URL "
            "--node-name NAME --advertise-addr IP`") from None
    except wire.ApiError as error:
        raise common.UserFacingError(str(error)) from None


def quoted(ref: str) -> str:
    return urllib.parse.quote(ref, safe="")


def _row(node: dict, self_id: str) -> dict:
    """One line of `node ls --format json`: docker's keys, and this project's own."""
    return {"ID": node["id"] + (" *" if node["id"] == self_id else ""),
            "Self": node["id"] == self_id, "Hostname": node["hostname"],
            "Address": node["address"], "Status": node["status"].capitalize(),
            "Availability": node["availability"].capitalize(),
            "ManagerStatus": "Reachable" if node["role"] == "manager" else "",
            "Role": node["role"], "Labels": listing.labels_text(node["labels"]),
            "EngineLabels": listing.labels_text(node["engine_labels"]),
            "Platform": node["platform"]}


def ls(args: argparse.Namespace) -> int:
    answer = call(args, "GET", "/v1/nodes")
    nodes = answer["nodes"]
    if args.quiet:
        sys.stdout.write("".join(f"{n['id']}\n" for n in nodes))
        return 0
    rows = [_row(n, answer["self"]) for n in nodes]
    if args.format == "json":
        for row in rows:
            row["ID"] = row["ID"].removesuffix(" *")
    listing.write_list(args.format, rows, [
        ("ID", "ID"), ("Hostname", "HOSTNAME"), ("Address", "ADDRESS"), ("Status", "STATUS"),
        ("Availability", "AVAILABILITY"), ("Role", "ROLE"), ("Labels", "LABELS"),
        ("EngineLabels", "ENGINE LABELS")])
    return 0


def update(args: argparse.Namespace) -> int:
    body: dict = {"label_add": listing.key_values(args.label_add), "label_rm": args.label_rm}
    if args.role:
        body["role"] = args.role
    if args.availability:
        body["availability"] = args.availability
    node = call(args, "PATCH", f"/v1/nodes/{quoted(args.node)}", body)
    print(node["id"])
    return 0


def rm(args: argparse.Namespace) -> int:
    failed = False
    for ref in args.nodes:
        try:
            node = call(args, "DELETE", f"/v1/nodes/{quoted(ref)}")
        except common.UserFacingError as error:
            common.print_error(str(error))
            failed = True
            continue
        print(node["id"])
    return 1 if failed else 0
