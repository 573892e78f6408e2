"""`pcompose cluster init` (the cluster's CA and certs), the agent's --listen-tcp flags, and the
CLI's client of an agent reached over TCP (`-H tcp://HOST:PORT`)."""

from __future__ import annotations

import argparse
import http.client
import os
from pathlib import Path

from reconciler.agent import plainclient, wire
from reconciler.cli import common


def register(verbs: argparse._SubParsersAction) -> None:
    """Add the `cluster` verb."""
    parser = verbs.add_parser("cluster", help="Manage the cluster's certificates")
    sub = parser.add_subparsers(dest="cluster_verb", metavar="COMMAND", required=True)
    init = sub.add_parser("init", help="Make the cluster's CA, a cert per node and a client "
                                       "cert")
    init.add_argument("--dir", default="/etc/pcompose/tls", metavar="DIR",
                      help="Where the CA and certs go (default /etc/pcompose/tls)")
    init.add_argument("--node", dest="nodes", action="append", default=[], metavar="NAME",
                      help="A node to make a cert for (repeatable); its name is in the cert")
    init.add_argument("--san", action="append", default=[], metavar="HOST|IP",
                      help="More names or addresses every node's cert is valid for")
    init.set_defaults(handler=run_init)


def run_init(args: argparse.Namespace) -> int:
    from reconciler.cluster import tls

    directory = Path(args.dir)
    try:
        made = tls.init(directory, args.nodes, args.san)
    except (tls.TLSError, OSError) as error:
        raise common.UserFacingError(f"cluster init: {error}") from None
    print(f"CA\t{directory / tls.CA_CERT}")
    for name, files in made.items():
        print(f"{name}\t{files.cert}\t{files.key}")
    return 0


def listen_of(args: argparse.Namespace):
    """The peers.Listen of `agent --listen-tcp ADDR:PORT` and its companions."""
    from reconciler.agent import peers
    from reconciler.cluster import tls

    host, _, port = args.listen_tcp.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise common.UserFacingError(f"--listen-tcp {args.listen_tcp}: expected ADDR:PORT")
    tls_given = [args.tls_ca, args.tls_cert, args.tls_key]
    if any(tls_given) and not all(tls_given):
        raise common.UserFacingError("--tls-ca, --tls-cert and --tls-key go together")
    token = None
    if args.token:
        try:
            token = Path(args.token).read_text().strip()
        except OSError as error:
            raise common.UserFacingError(f"--token {args.token}: {error.strerror}") from None
        if len(token) < 16:
            raise common.UserFacingError(f"--token {args.token}: under 16 characters, too "
                                         "easy to guess")
    files = tls.Files(args.tls_ca, args.tls_cert, args.tls_key) if all(tls_given) else None
    if files is None and not args.insecure_tcp:
        raise common.UserFacingError(
            "--listen-tcp needs --tls-ca/--tls-cert/--tls-key (pcompose cluster init makes "
            "them), or --insecure-tcp to serve in clear")
    listen = peers.Listen(host.strip("[]"), int(port), files, token, args.insecure_tcp)
    try:
        listen.server_context()
    except tls.TLSError as error:
        raise common.UserFacingError(str(error)) from None
    return listen


# -- the CLI's side: -H tcp://HOST:PORT
def add_client_options(parser: argparse.ArgumentParser) -> None:
    """-H and the files a client shows the agent's TCP API (global options)."""
    parser.add_argument("-H", "--host", dest="host", default=os.environ.get("PCOMPOSE_HOST"),
                        metavar="tcp://HOST:PORT",
                        help="An agent's TCP API instead of the local socket; env PCOMPOSE_HOST")
    parser.add_argument("--tlscacert", default=os.environ.get("PCOMPOSE_TLS_CA"),
                        metavar="FILE", help="The cluster's CA; env PCOMPOSE_TLS_CA")
    parser.add_argument("--tlscert", default=os.environ.get("PCOMPOSE_TLS_CERT"),
                        metavar="FILE", help="The client cert; env PCOMPOSE_TLS_CERT")
    parser.add_argument("--tlskey", default=os.environ.get("PCOMPOSE_TLS_KEY"),
                        metavar="FILE", help="The client key; env PCOMPOSE_TLS_KEY")
    parser.add_argument("--token-file", dest="token_file",
                        default=os.environ.get("PCOMPOSE_TOKEN_FILE"), metavar="FILE",
                        help="The agents' shared token instead of a client cert; env "
                             "PCOMPOSE_TOKEN_FILE")


def remote(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "host", None))


class _Connection(http.client.HTTPSConnection):
    """HTTPS (or HTTP with a tcp:// URL and no CA) carrying the token when there is one."""

    def __init__(self, host: str, port: int, timeout: float | None, context, token: str | None
                 ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.token, self.clear = token, context is None

    def connect(self) -> None:
        if self.clear:
            http.client.HTTPConnection.connect(self)
        else:
            super().connect()

    def putrequest(self, method: str, url: str, *args, **kw) -> None:
        super().putrequest(method, url, *args, **kw)
        if self.token:
            self.putheader("Authorization", f"Bearer {self.token}")


class RemoteClient(plainclient.PlainClient):
    """PlainClient's calls to an agent's TCP API."""

    def __init__(self, args: argparse.Namespace, timeout: float | None = 30.0) -> None:
        from reconciler.cluster import tls

        url = args.host
        scheme, _, address = url.partition("://")
        host, _, port = address.rstrip("/").rpartition(":")
        if scheme not in ("tcp", "https", "http") or not host or not port.isdigit():
            raise common.UserFacingError(f"-H {url}: expected tcp://HOST:PORT")
        token = None
        if args.token_file:
            try:
                token = Path(args.token_file).read_text().strip()
            except OSError as error:
                raise common.UserFacingError(
                    f"--token-file {args.token_file}: {error.strerror}") from None
        context = None
        if scheme != "http":
            try:
                context = tls.client_context(args.tlscacert, args.tlscert, args.tlskey)
            except tls.TLSError as error:
                raise common.UserFacingError(str(error)) from None
        self.socket = url
        self._conn = _Connection(host.strip("[]"), int(port), timeout, context, token)


def agent_client(args: argparse.Namespace, timeout: float | None = 30.0
                 ) -> plainclient.PlainClient:
    """The agent the verb talks to: -H's over TCP, else the local socket's."""
    if remote(args):
        return RemoteClient(args, timeout)
    return plainclient.PlainClient(Path(args.run_dir), timeout=timeout)


# -- verbs that reach the node running the container, through the agent
def logs(args: argparse.Namespace, project: str, tail: int | None, since) -> int | None:
    """`logs` of every node's containers, through the agent (which asks its peers); None when
    the local agent is no node serving its peers (then the CLI reads the logs itself)."""
    import datetime as dt

    from reconciler.cli import compose_logs
    from runtime.oci import logs as oci_logs

    body = {"project": project, "services": list(args.services), "index": args.index,
            "tail": tail, "follow": bool(args.follow)}
    printer = compose_logs.Printer([], project=project, colour=compose_logs._colour(args),
                                   prefix=not args.no_log_prefix, timestamps=args.timestamps)
    held: list[dict] = []  # not following: every line first, for the prefixes' width

    def show(item: dict) -> None:
        line = oci_logs.LogLine(dt.datetime.fromisoformat(item["time"]), item["stream"],
                                item["text"])
        if since is None or line.time >= since:
            printer.write(item["name"], line)

    try:
        with agent_client(args, timeout=None) as agent:
            for item in agent.stream("POST", "/v1/logs", body):
                if "unreachable" in item:
                    common.print_warning(f"node {item['node']} did not answer: its "
                                         "containers' logs are not shown")
                elif args.follow:
                    printer.add([item["name"]])
                    show(item)
                else:
                    held.append(item)
        printer.add(sorted({item["name"] for item in held}))
        for item in held:
            show(item)
    except wire.AgentUnavailable as error:
        if remote(args):
            raise common.UserFacingError(str(error)) from None
        return None
    except wire.ApiError as error:
        if error.status == 404 and not remote(args):
            return None  # an agent of one host: the logs are all here
        raise common.UserFacingError(str(error)) from None
    return 0


def exec_(args: argparse.Namespace, project: str, argv: list[str]) -> int | None:
    """`exec` on the node that runs the replica, through the agent, its output streamed
    (no terminal, no input); None when the local agent is no node serving its peers."""
    import base64
    import sys

    from reconciler.cli import compose_ctl

    body = {"project": project, "service": args.service, "index": args.index,
            "command": argv, "user": args.user, "env": compose_ctl._environment(args.env),
            "workdir": args.workdir}
    code = None
    try:
        with agent_client(args, timeout=None) as agent:
            for item in agent.stream("POST", "/v1/exec", body):
                if "error" in item:
                    raise common.UserFacingError(item["error"])
                if "exit" in item:
                    code = int(item["exit"])
                    continue
                out = sys.stdout if item["stream"] == "stdout" else sys.stderr
                out.buffer.write(base64.b64decode(item["data"]))
                out.flush()
    except wire.AgentUnavailable as error:
        if remote(args):
            raise common.UserFacingError(str(error)) from None
        return None
    except wire.ApiError as error:
        if error.status == 404 and "Not Found" in str(error) and not remote(args):
            return None
        raise common.UserFacingError(str(error)) from None
    if code is None:
        raise common.UserFacingError("the exec's node went away before it ended")
    return code


def top(args: argparse.Namespace, project: str) -> int | None:
    """`top` of every node's containers, through the agent; None when the local agent is no
    node serving its peers (then the CLI reads /proc itself)."""
    from reconciler.cli import render

    body = {"project": project, "services": list(args.services)}
    try:
        with agent_client(args, timeout=60.0) as agent:
            answer = agent.call("POST", "/v1/top", body)
    except wire.AgentUnavailable as error:
        if remote(args):
            raise common.UserFacingError(str(error)) from None
        return None
    except wire.ApiError as error:
        if error.status == 404 and not remote(args):
            return None
        raise common.UserFacingError(str(error)) from None
    for node in answer.get("unreachable") or ():
        common.print_warning(f"node {node} did not answer: its containers are not listed")
    for container in answer["containers"]:
        print(container["name"])
        print(render.table(["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
                           container["processes"]), end="")
        print()
    return 0
