"""The stack verbs of docker compose beside up and down that make, remove, scale and follow
containers (create, rm, scale, wait, attach, volumes): their flags.

Registration imports nothing but argparse, as compose.py's does. compose_create: create and
scale (the agent converges them as an `up`); compose_rm: rm (the agent removes);
compose_session: wait and attach (on running containers, in this process); compose_volumes:
volumes.
"""

from __future__ import annotations

import argparse
import importlib


def _handler(module: str, function: str):
    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"reconciler.cli.{module}"), function)(args)
    return run


def _services(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE")


def _bool(text: str) -> bool:
    """A Go bool flag's value (`--sig-proxy=false`)."""
    words = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}
    if text.lower() not in words:
        raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")
    return words[text.lower()]


def register(verbs: argparse._SubParsersAction) -> None:
    """Add this module's verbs to the parser."""
    p = verbs.add_parser("create", help="Creates containers for a service")
    p.add_argument("--build", action="store_true",
                   help="Build images before starting containers")
    p.add_argument("--no-build", action="store_true", help="Don't build an image")
    p.add_argument("--pull", default=None, metavar="POLICY",
                   help='Pull image before running ("always"|"missing"|"never")')
    p.add_argument("--force-recreate", action="store_true",
                   help="Recreate containers even if their configuration hasn't changed")
    p.add_argument("--no-recreate", action="store_true",
                   help="If containers already exist, don't recreate them")
    p.add_argument("--remove-orphans", action="store_true",
                   help="Remove containers for services not defined in the Compose file")
    p.add_argument("--scale", action="append", default=[], metavar="SERVICE=NUM",
                   help="Scale SERVICE to NUM instances")
    _services(p)
    p.set_defaults(handler=_handler("compose_create", "create"))

    p = verbs.add_parser("rm", help="Removes stopped service containers")
    p.add_argument("-f", "--force", action="store_true", help="Don't ask to confirm removal")
    p.add_argument("-s", "--stop", action="store_true",
                   help="Stop the containers, if required, before removing")
    p.add_argument("-v", "--volumes", action="store_true",
                   help="Remove any anonymous volumes attached to containers")
    p.add_argument("-a", "--all", action="store_true",  # docker's, deprecated: no effect
                   help=argparse.SUPPRESS)
    _services(p)
    p.set_defaults(handler=_handler("compose_rm", "rm"))

    p = verbs.add_parser("scale", help="Scale services")
    p.add_argument("--no-deps", action="store_true", help="Don't start linked services")
    p.add_argument("pairs", nargs="+", metavar="SERVICE=REPLICAS")
    p.set_defaults(handler=_handler("compose_create", "scale"))

    p = verbs.add_parser("wait", help="Block until containers of all (or specified) services "
                                      "stop")
    p.add_argument("--down-project", action="store_true",
                   help="Drops project when the first container stops")
    p.add_argument("services", nargs="+", metavar="SERVICE")
    p.set_defaults(handler=_handler("compose_session", "wait"))

    p = verbs.add_parser("attach", help="Attach local standard input, output, and error "
                                        "streams to a service's running container")
    p.add_argument("--detach-keys", default="", metavar="KEYS",
                   help="Override the key sequence for detaching from a container")
    p.add_argument("--index", type=int, default=0,
                   help="index of the container if service has multiple replicas")
    p.add_argument("--no-stdin", action="store_true", help="Do not attach STDIN")
    p.add_argument("--sig-proxy", nargs="?", type=_bool, const=True, default=True,
                   metavar="BOOL",
                   help="Proxy all received signals to the process (default true)")
    p.add_argument("service", metavar="SERVICE")
    p.set_defaults(handler=_handler("compose_session", "attach"))

    p = verbs.add_parser("volumes", help="List volumes")
    p.add_argument("--format", default="table", help="table, json or a Go template")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display volume names")
    _services(p)
    p.set_defaults(handler=_handler("compose_volumes", "volumes"))
