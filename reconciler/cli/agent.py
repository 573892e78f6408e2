"""`pcompose agent`: run the reconciler and its API in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from pathlib import Path

from reconciler.cli import common


def register(verbs: argparse._SubParsersAction) -> None:
    """Add the `agent` verb."""
    parser = verbs.add_parser("agent", help="Run the pcompose agent in the foreground")
    parser.add_argument("--resync", type=float, default=10.0, metavar="SECONDS",
                        help="Look at every project again this often (default 10)")
    parser.add_argument("--log-format", choices=("auto", "json", "console"), default="auto",
                        help="Log lines as JSON or for a terminal (default: JSON unless a tty)")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"))
    parser.add_argument("--stop", action="store_true",
                        help="Stop the agent that serves --run-dir (containers keep running)")
    cluster = parser.add_argument_group("cluster", "Join a cluster whose store is etcd")
    cluster.add_argument("--cluster", metavar="URL[,URL...]",
                         help="etcd's client URLs (http:// or https://)")
    cluster.add_argument("--cluster-ca", metavar="FILE", help="CA that signed etcd's certs")
    cluster.add_argument("--cluster-cert", metavar="FILE", help="Client cert for etcd")
    cluster.add_argument("--cluster-key", metavar="FILE", help="Client cert's key")
    cluster.add_argument("--node-name", metavar="NAME",
                         help="This node's name (default: the hostname)")
    cluster.add_argument("--advertise-addr", metavar="IP",
                         help="This node's address on the hosts' network (underlay)")
    cluster.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                         help="An engine label of this node (repeatable)")
    remote = parser.add_argument_group("tcp", "Serve the API to the cluster's peers and clients")
    remote.add_argument("--listen-tcp", metavar="ADDR:PORT",
                        help="Serve the API on this TCP address too (needs --cluster)")
    remote.add_argument("--tls-ca", metavar="FILE", help="The cluster's CA (pcompose cluster init)")
    remote.add_argument("--tls-cert", metavar="FILE", help="This agent's cert")
    remote.add_argument("--tls-key", metavar="FILE", help="This agent's key")
    remote.add_argument("--token", metavar="FILE",
                        help="A shared secret a client may show instead of a cert")
    remote.add_argument("--insecure-tcp", action="store_true",
                        help="Serve the TCP API in clear (anyone who reaches it runs containers)")
    parser.set_defaults(handler=run)


def cluster_config(args: argparse.Namespace):
    """The membership.Config of --cluster and its companions; None without --cluster."""
    given = [f for f in ("cluster_ca", "cluster_cert", "cluster_key", "node_name",
                         "advertise_addr") if getattr(args, f)] + (["label"] if args.label else [])
    if not args.cluster:
        if given:
            raise common.UserFacingError(
                f"--{given[0].replace('_', '-')} needs --cluster")
        return None
    import ipaddress
    import socket

    from reconciler.cluster import membership

    endpoints = tuple(e.strip() for e in args.cluster.split(",") if e.strip())
    if not args.advertise_addr:
        raise common.UserFacingError("--cluster needs --advertise-addr IP (this node's address "
                                     "on the hosts' network)")
    try:
        address = str(ipaddress.ip_address(args.advertise_addr))
    except ValueError:
        raise common.UserFacingError(
            f"--advertise-addr {args.advertise_addr}: not an IP address") from None
    if bool(args.cluster_cert) != bool(args.cluster_key):
        raise common.UserFacingError("--cluster-cert and --cluster-key go together")
    labels = []
    for text in args.label:
        key, eq, value = text.partition("=")
        if not key or not eq:
            raise common.UserFacingError(f"--label {text}: expected KEY=VALUE")
        labels.append((key, value))
    return membership.Config(endpoints, args.node_name or socket.gethostname(), address,
                             tuple(sorted(dict(labels).items())), args.cluster_ca,
                             args.cluster_cert, args.cluster_key)


def stop(run_dir: Path, timeout: float = 10.0) -> int:
    """SIGTERM to the agent on `run_dir`, by the PID it reports; its containers live on."""
    import os
    import signal
    import time

    from reconciler.agent import client

    async def pid() -> int | None:
        try:
            async with client.AgentClient(run_dir) as agent:
                return (await agent.version()).pid
        except client.AgentUnavailable:
            return None

    found = asyncio.run(pid())
    if found is None:
        print(f"no agent answers on {run_dir}")
        return 0
    os.kill(found, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(found):
        time.sleep(0.05)
    print(f"agent {found} stopped")
    return 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped
    except FileNotFoundError:
        return False


def run(args: argparse.Namespace) -> int:
    if args.stop:
        return stop(Path(args.run_dir))
    # Imported here: every other verb would otherwise pay for the agent's imports at start.
    from reconciler.agent import daemon, logs, store

    json_output = {"auto": None, "json": True, "console": False}[args.log_format]
    logs.configure(json_output=json_output, level=args.log_level)
    try:
        root, run_dir = Path(args.root), Path(args.run_dir)
        cluster = cluster_config(args)
        listen = None
        if cluster is not None and args.listen_tcp:
            from reconciler.cli import cluster as cluster_cli

            listen = cluster_cli.listen_of(args)
            cluster = dataclasses.replace(cluster, api=listen.url(cluster.address))
        elif args.listen_tcp:
            raise common.UserFacingError("--listen-tcp needs --cluster")
        runtime = daemon.default_runtime(root, run_dir, args.host_netns)
        asyncio.run(daemon.run(root, run_dir, runtime=runtime,
                               resync=args.resync, cluster=cluster, listen=listen))
    except daemon.AlreadyRunning as error:
        raise common.UserFacingError(str(error), daemon.EXIT_ALREADY_RUNNING) from None
    except store.Damaged as error:
        raise common.UserFacingError(str(error)) from None
    except daemon.TaskFailed as error:  # logged with its traceback above
        raise common.UserFacingError(f"the agent stopped: {error}") from None
    except OSError as error:
        raise common.UserFacingError(f"cannot start the agent: {error}") from None
    return 0
